// A stand-in message gateway's delivery service for tests/it/test_m5s_gw.sh: node's own HTTP/2
// over TLS server requiring a client certificate from the test CA (m5s authenticates with its
// own), serving what m5s POSTs to a gateway (TS 29.538 MSGG_L3GDelivery / MSGG_N3GDelivery):
// {root}/deliver-message (L3gMessageDelivery or N3gMessageDelivery) and {root}/deliver-report
// (DeliveryStatusReport). Every request becomes one JSON line in LOG: {path, method,
// contentType, peer (the client certificate's CN and SAN), body, schema}; each body is checked
// against its schema in strict mode (only the members the schema declares): `schema` is "ok" or
// the errors, and a body that fails is answered 400. Otherwise the answer is the status in
// MODE_FILE (default 204; 503 or 429 to play a gateway that cannot deliver now, 404 for an
// unknown device).
//   node gw_receiver.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR
import http2 from 'node:http2';
import { readFileSync, appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { openapiValidator } from '../schema/openapi.mjs';

const [port, key, cert, ca, log, modeFile, openapiDir] = process.argv.slice(2);
if (!openapiDir) {
  console.error('usage: node gw_receiver.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR');
  process.exit(2);
}
const check = openapiValidator(openapiDir, { strict: true });
const ROUTES = {
  '/msgg-l3gdelivery/v1/deliver-message': ['TS29538_MSGG_L3GDelivery.yaml', 'L3gMessageDelivery'],
  '/msgg-n3gdelivery/v1/deliver-message': ['TS29538_MSGG_N3GDelivery.yaml', 'N3gMessageDelivery'],
  '/msgg-l3gdelivery/v1/deliver-report': ['TS29538_MSGS_MSGDelivery.yaml', 'DeliveryStatusReport'],
  '/msgg-n3gdelivery/v1/deliver-report': ['TS29538_MSGS_MSGDelivery.yaml', 'DeliveryStatusReport'],
};

function schemaCheck(path, text) {
  const r = ROUTES[path];
  if (!r) return [`no such operation '${path}'`];
  let body;
  try {
    body = JSON.parse(text);
  } catch (e) {
    return [`not JSON: ${e.message}`];
  }
  return check(join(openapiDir, r[0]), r[1], body) ?? 'ok';
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
server.listen(Number(port), '127.0.0.1', () => console.log('gw_receiver: listening'));
