// An SMSC that delivers mobile-originated messages (patients' replies) to OpenVisit.
//
// usage: node smsc_mo.mjs --port P --system-id ID --password PW --mo '[["+420601000001","+420700000001","STOP"]]'
//
// Built on npm smpp's server API (the same library as tests/peers/smsc.mjs). Every session
// that binds as a receiver or transceiver gets each configured message as a deliver_sm
// (esm_class 0: a mobile-originated message, not a receipt) 100 ms after its bind; the
// ESME's deliver_sm_resp status is printed as "MO_ACK <status> <text>". A non-zero status
// means "try again later": the message is delivered again on the next bind, as an SMSC
// holding messages for an ESME would do. Prints "READY smsc_mo 127.0.0.1:<port>".
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(new URL('../../peers/package.json', import.meta.url));
const smpp = require('smpp');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'system-id': { type: 'string' },
    password: { type: 'string' },
    mo: { type: 'string' },
  },
});
const pending = JSON.parse(args.mo ?? '[]');
const sessions = new Set();

const server = smpp.createServer((session) => {
  sessions.add(session);
  session.on('close', () => sessions.delete(session));
  session.on('error', (e) => console.error(`session error: ${e.message}`));
  for (const kind of ['bind_transceiver', 'bind_receiver', 'bind_transmitter']) {
    session.on(kind, (pdu) => {
      if (pdu.system_id !== args['system-id'] || pdu.password !== args.password) {
        session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
        session.close();
        return;
      }
      session.send(pdu.response({ system_id: 'MOSMSC' }));
      console.log(`${kind} accepted`);
      if (kind !== 'bind_transmitter') setTimeout(() => deliverAll(session), 100);
    });
  }
  session.on('submit_sm', (pdu) => session.send(pdu.response({ message_id: 'mo-peer' })));
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
});

function deliverAll(session) {
  for (const item of [...pending]) {
    const [from, to, text] = item;
    session.deliver_sm({
      source_addr_ton: 1, source_addr_npi: 1, source_addr: from.replace(/^\+/, ''),
      dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: to.replace(/^\+/, ''),
      esm_class: 0, data_coding: 0, short_message: text,
    }, (resp) => {
      console.log(`MO_ACK ${resp.command_status} ${text}`);
      if (resp.command_status === 0) pending.splice(pending.indexOf(item), 1);
    });
  }
}

server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`READY smsc_mo 127.0.0.1:${args.port}`);
});
const stop = () => { for (const s of sessions) s.destroy(); server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 500).unref(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
