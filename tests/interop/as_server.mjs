// A stand-in Application Server for the point-to-application tests: node's own HTTP/2 over
// TLS server, requiring a client certificate from the test CA (m5s authenticates with its
// own). Every request becomes one JSON line in LOG: {path, method, contentType, peer (the
// client certificate's subject CN and SAN), body, schema}. Each body m5s sends is checked
// against TS 29.538 in strict mode (tests/schema/openapi.mjs: only the members the schema
// declares): `schema` is "ok" or the errors, and a body that fails is answered 400 (an AS
// that checks what it gets refuses it). Otherwise it answers with the status in the file
// MODE_FILE (default 204; e.g. 503 to play a failing AS).
//   node as_server.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR
import http2 from 'node:http2';
import { readFileSync, appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { openapiValidator } from '../schema/openapi.mjs';

const [port, key, cert, ca, log, modeFile, openapiDir] = process.argv.slice(2);
if (!openapiDir) {
  console.error('usage: node as_server.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR');
  process.exit(2);
}
const check = openapiValidator(openapiDir, { strict: true });
const SPEC = join(openapiDir, 'TS29538_MSGS_MSGDelivery.yaml');
// The schema of what m5s POSTs to {targetUri}/<operation> (TS 29.538 cl. 5.3, as a consumer).
const SCHEMA = { 'deliver-message': 'UEMessageDelivery', 'deliver-report': 'DeliveryStatusReport' };

function schemaCheck(path, text) {
  const op = path.split('/').pop();
  if (!SCHEMA[op]) return [`no schema for the operation '${op}'`];
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    return [`not JSON: ${e.message}`];
  }
  return check(SPEC, SCHEMA[op], body) ?? 'ok';
}
const server = http2.createSecureServer({
  key: readFileSync(key), cert: readFileSync(cert), ca: readFileSync(ca),
  requestCert: true, rejectUnauthorized: true, allowHTTP1: false,
});
server.on('stream', (stream, headers) => {
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    const pc = stream.session.socket.getPeerCertificate();
    const body = Buffer.concat(chunks).toString('utf8');
    const schema = schemaCheck(headers[':path'], body);
    appendFileSync(log, JSON.stringify({
      path: headers[':path'], method: headers[':method'], contentType: headers['content-type'],
      peer: { cn: pc.subject && pc.subject.CN, san: pc.subjectaltname }, body, schema,
    }) + '\n');
    let status = existsSync(modeFile) ? Number(readFileSync(modeFile, 'utf8').trim()) : 204;
    if (schema !== 'ok') status = 400;
    stream.respond({ ':status': status });
    stream.end();
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log('as_server: listening'));
