// A no-op HL7 v2 MLLP listener on npm node-hl7-server: answers every message with an AA ACK.
// Used by a benchmark as the comparison peer.
//
// usage: node hl7_noop_server.mjs [--port 2575]   (env HL7_PORT; argv wins)
// Listens on 127.0.0.1; prints "READY hl7_noop_server 127.0.0.1:<port>" once listening.
// Note: the ACK's MSH-10 (message control id) is literally "ACK" with this library.
import { parseArgs } from 'node:util';

import { Server } from 'node-hl7-server';

const { values: args } = parseArgs({ options: { port: { type: 'string' } } });
const port = Number(args.port ?? process.env.HL7_PORT ?? 2575);

const server = new Server({ bindAddress: '127.0.0.1' });
const inbound = server.createInbound({ port }, async (req, res) => {
  await res.sendResponse('AA');
});
inbound.on('listen', () => console.log(`READY hl7_noop_server 127.0.0.1:${port}`));
inbound.on('error', (err) => {
  console.error(`hl7_noop_server error: ${err?.message ?? err}`);
  process.exit(1);
});

async function stop() {
  setTimeout(() => process.exit(0), 1000).unref();
  await inbound.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
