// A small SMSC for OpenVisit's tests, on npm smpp's server API (SMPP 3.4/5.0).
//
// usage: node smsc.mjs --log FILE [--port 2775] [--system-id ID] [--password PW]
//                      [--receipt-delay-ms 50] [--undeliverable 4470000,4470001]
//   env:  SMSC_PORT, SMSC_SYSTEM_ID, SMSC_PASSWORD, SMSC_LOG (argv wins)
//
// - bind_transceiver / bind_transmitter / bind_receiver with the right system_id and
//   password are accepted; anything else gets ESME_RBINDFAIL and the connection is closed.
// - submit_sm before a bind gets ESME_RINVBNDSTS.
// - each accepted submit_sm is appended as one JSON line to the log file (before its
//   submit_sm_resp is sent) and answered with a unique message id.
// - if registered_delivery asks for a receipt, a deliver_sm receipt (esm_class 0x04,
//   "id:<id> sub:001 dlvr:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD
//   err:000 text:", TLVs receipted_message_id and message_state) follows on the same
//   session if it can receive, else on another receiving session of the same system_id.
//   Destinations listed in --undeliverable get stat:UNDELIV err:001 instead.
// - enquire_link and unbind are answered; SIGTERM/SIGINT close everything and exit 0.
// Listens on 127.0.0.1; prints "READY smsc 127.0.0.1:<port>" once listening.
import { appendFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const smpp = require('smpp');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'system-id': { type: 'string' },
    password: { type: 'string' },
    log: { type: 'string' },
    'receipt-delay-ms': { type: 'string' },
    undeliverable: { type: 'string' },
  },
});

const port = Number(args.port ?? process.env.SMSC_PORT ?? 2775);
const systemId = args['system-id'] ?? process.env.SMSC_SYSTEM_ID ?? 'openvisit';
const password = args.password ?? process.env.SMSC_PASSWORD ?? 'secret';
const logPath = args.log ?? process.env.SMSC_LOG;
const receiptDelayMs = Number(args['receipt-delay-ms'] ?? 50);
const undeliverable = new Set((args.undeliverable ?? '').split(',').filter(Boolean));
if (!logPath) {
  console.error('smsc.mjs: --log FILE is required');
  process.exit(2);
}

const idPrefix = randomBytes(3).toString('hex');
let counter = 0;
const nextMessageId = () => `${idPrefix}${(++counter).toString(16).padStart(8, '0')}`;

const sessions = new Set();
const STANDARD = new Set([
  'command', 'command_length', 'command_id', 'command_status', 'sequence_number',
  'service_type', 'source_addr_ton', 'source_addr_npi', 'source_addr', 'dest_addr_ton',
  'dest_addr_npi', 'destination_addr', 'esm_class', 'protocol_id', 'priority_flag',
  'schedule_delivery_time', 'validity_period', 'registered_delivery',
  'replace_if_present_flag', 'data_coding', 'sm_default_msg_id', 'sm_length', 'short_message',
]);

function smppDate(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}`
    + `${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

function text(field) {
  if (field == null) return '';
  const m = typeof field === 'object' && !Buffer.isBuffer(field) ? field.message : field;
  return Buffer.isBuffer(m) ? m.toString('latin1') : String(m ?? '');
}

function jsonable(value) {
  if (Buffer.isBuffer(value)) return { hex: value.toString('hex') };
  if (Array.isArray(value)) return value.map(jsonable);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonable(v)]));
  }
  return value;
}

function receiverFor(session) {
  if (session.canReceive && !session.closed) return session;
  for (const s of sessions) {
    if (s.canReceive && !s.closed && s.systemId === session.systemId) return s;
  }
  return null;
}

function sendReceipt(session, submit, messageId, submittedAt) {
  const target = receiverFor(session);
  if (!target) {
    console.error(`no receiving session for receipt of ${messageId}`);
    return;
  }
  const ok = !undeliverable.has(submit.destination_addr);
  const stat = ok ? 'DELIVRD' : 'UNDELIV';
  const err = ok ? '000' : '001';
  const dlvr = ok ? '001' : '000';
  const receipt = `id:${messageId} sub:001 dlvr:${dlvr} submit date:${smppDate(submittedAt)} `
    + `done date:${smppDate(new Date())} stat:${stat} err:${err} text:`;
  const options = {
    source_addr_ton: submit.dest_addr_ton,
    source_addr_npi: submit.dest_addr_npi,
    source_addr: submit.destination_addr,
    dest_addr_ton: submit.source_addr_ton,
    dest_addr_npi: submit.source_addr_npi,
    destination_addr: submit.source_addr,
    esm_class: 0x04,
    data_coding: 0,
    short_message: receipt,
    receipted_message_id: messageId,
    message_state: ok ? 2 : 5, // DELIVERED : UNDELIVERABLE
  };
  if (submit.user_message_reference !== undefined) {
    options.user_message_reference = submit.user_message_reference;
  }
  target.deliver_sm(options, (resp) => {
    if (resp.command_status !== 0) {
      console.error(`deliver_sm for ${messageId} answered with status ${resp.command_status}`);
    }
  });
}

const server = smpp.createServer((session) => {
  sessions.add(session);
  session.bound = false;
  session.closed = false;
  session.on('close', () => {
    session.closed = true;
    sessions.delete(session);
  });
  session.on('error', (e) => {
    console.error(`session error: ${e.message}`);
  });

  for (const kind of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
    session.on(kind, (pdu) => {
      if (session.bound || pdu.system_id !== systemId || pdu.password !== password) {
        console.log(`${kind} refused for system_id=${pdu.system_id}`);
        session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
        session.close();
        return;
      }
      session.bound = true;
      session.systemId = pdu.system_id;
      session.canReceive = kind !== 'bind_transmitter';
      session.canSend = kind !== 'bind_receiver';
      console.log(`${kind} accepted for system_id=${pdu.system_id}`);
      session.send(pdu.response({ system_id: 'OVSMSC' }));
    });
  }

  session.on('submit_sm', (pdu) => {
    if (!session.bound || !session.canSend) {
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    const messageId = nextMessageId();
    const submittedAt = new Date();
    const tlvs = {};
    for (const [key, value] of Object.entries(pdu)) {
      if (!STANDARD.has(key) && key in smpp.tlvs && value !== undefined) tlvs[key] = jsonable(value);
    }
    const entry = {
      message_id: messageId,
      system_id: session.systemId,
      source_addr: pdu.source_addr,
      destination_addr: pdu.destination_addr,
      data_coding: pdu.data_coding,
      esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      text: pdu.message_payload !== undefined ? text(pdu.message_payload) : text(pdu.short_message),
      udh: pdu.short_message && pdu.short_message.udh ? jsonable(pdu.short_message.udh) : null,
      user_message_reference: pdu.user_message_reference ?? null,
      tlvs,
      submitted_at: submittedAt.toISOString(),
    };
    appendFileSync(logPath, `${JSON.stringify(entry)}\n`);
    session.send(pdu.response({ message_id: messageId }));
    if ((pdu.registered_delivery & 0x03) !== 0) {
      setTimeout(() => sendReceipt(session, pdu, messageId, submittedAt), receiptDelayMs);
    }
  });

  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.bound = false;
    session.close();
  });
  session.on('unknown', (pdu) => session.send(pdu.response()));
});

server.on('error', (e) => {
  console.error(`server error: ${e.message}`);
  process.exit(1);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`READY smsc 127.0.0.1:${port}`);
});

function stop() {
  for (const s of sessions) s.destroy();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
