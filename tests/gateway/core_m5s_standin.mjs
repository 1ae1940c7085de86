// A stand-in for m5s's side of MSGin5G-2/-4, for the gateway core's tests until m5s serves it
// (docs/gateways.md): node's own HTTP/2 over TLS server requiring a client certificate from
// the test CA, with the four resources the gateway calls:
//   POST /oauth2/token (form: grant_type=client_credentials; the certificate's SAN URI
//        urn:msgin5g:gw:<gwId>) -> a random token, expires_in from EXPIRES_IN (default 3600)
//   POST /msgs-gwueregistration/v1/registrations {"gwId","ueSvcIds"} -> 201, same body (403
//        when an ID starts with "refuse")
//   DELETE /msgs-gwueregistration/v1/registrations/{id} -> 204
//   POST /msgs-msgdelivery/v1/deliver-ue-message (UEMessageDelivery) -> 200 MessageDeliveryAck
//   POST /msgs-msgdelivery/v1/deliver-report (DeliveryStatusReport) -> 204
// Every request is one JSON line in LOG: {path, method, contentType, peer (SAN), auth (the
// bearer token matches one issued: true/false), body, schema}. The bodies are checked against
// TS 29.538 in strict mode (only the declared members); a body that fails, or a request
// without a valid token, is answered 400 / 401. MODE_FILE, when it exists, holds the status
// every delivery/registration gets instead (e.g. 503: m5s failing); MODE_FILE.revoke, when it
// exists, invalidates every token issued so far (and is removed); MODE_FILE.expires, when it
// exists, holds the expires_in of the tokens issued from then on.
//   node core_m5s_standin.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR [EXPIRES_IN]
import http2 from 'node:http2';
import { randomBytes } from 'node:crypto';
import { readFileSync, appendFileSync, existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { openapiValidator } from '../schema/openapi.mjs';

const [port, key, cert, ca, log, modeFile, openapiDir, expiresIn] = process.argv.slice(2);
if (!openapiDir) {
  console.error('usage: node core_m5s_standin.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR [EXPIRES_IN]');
  process.exit(2);
}
const check = openapiValidator(openapiDir, { strict: true });
const SPEC = join(openapiDir, 'TS29538_MSGS_MSGDelivery.yaml');
const tokens = new Set();

function schemaCheck(schema, body) {
  return check(SPEC, schema, body) ?? 'ok';
}

function regCheck(body) {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return ['not an object'];
  const keys = Object.keys(body).sort().join(',');
  if (keys !== 'gwId,ueSvcIds') return [`members ${keys}, want gwId,ueSvcIds`];
  if (typeof body.gwId !== 'string' || !Array.isArray(body.ueSvcIds) || body.ueSvcIds.length < 1 ||
      body.ueSvcIds.length > 1000 || !body.ueSvcIds.every((s) => typeof s === 'string' && s.length))
    return ['gwId a string, ueSvcIds 1..1000 strings'];
  return 'ok';
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
    const text = Buffer.concat(chunks).toString('utf8');
    const path = headers[':path'];
    const method = headers[':method'];
    if (existsSync(modeFile + '.revoke')) { // every token issued so far stops being valid
      tokens.clear();
      unlinkSync(modeFile + '.revoke');
    }
    const authz = headers.authorization || '';
    const auth = authz.startsWith('Bearer ') && tokens.has(authz.slice(7));
    const mode = existsSync(modeFile) ? Number(readFileSync(modeFile, 'utf8').trim()) : 0;
    let status = 204, out = null, schema = 'ok', body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (path === '/oauth2/token') {
      const form = new URLSearchParams(text);
      const m = /URI:urn:msgin5g:gw:([A-Za-z0-9._-]+)/.exec(pc.subjectaltname || '');
      if (headers['content-type'] !== 'application/x-www-form-urlencoded' ||
          form.get('grant_type') !== 'client_credentials') {
        status = 400; out = { error: 'invalid_request', error_description: 'bad form' };
      } else if (!m || (form.get('client_id') && form.get('client_id') !== m[1])) {
        status = 401; out = { error: 'invalid_client', error_description: 'not a gateway' };
      } else {
        const t = randomBytes(24).toString('base64url');
        tokens.add(t);
        status = 200;
        const exp = existsSync(modeFile + '.expires')
          ? Number(readFileSync(modeFile + '.expires', 'utf8').trim()) : Number(expiresIn || 3600);
        out = { access_token: t, token_type: 'Bearer', expires_in: exp,
                scope: form.get('scope') || '' };
      }
      body = text; // the form, logged as text
    } else if (!auth) {
      status = 401; out = { title: 'Unauthorized', status: 401, detail: 'no valid token' };
    } else if (mode) {
      status = mode; out = { title: 'forced', status: mode, detail: `stand-in mode ${mode}` };
    } else if (path === '/msgs-gwueregistration/v1/registrations' && method === 'POST') {
      schema = regCheck(body);
      status = schema === 'ok' ? 201 : 400;
      out = schema === 'ok' ? body : { title: 'Bad Request', status: 400, detail: String(schema) };
      const bad = schema === 'ok' && body.ueSvcIds.find((id) => id.startsWith('refuse'));
      if (bad)
        [status, out] = [403, { title: 'Forbidden', status: 403, cause: 'NOT_AUTHORIZED',
                                detail: `${bad} is outside the gateway's pattern` }];
    } else if (path.startsWith('/msgs-gwueregistration/v1/registrations/') && method === 'DELETE') {
      status = 204;
    } else if (path === '/msgs-msgdelivery/v1/deliver-ue-message' && method === 'POST') {
      schema = schemaCheck('UEMessageDelivery', body);
      status = schema === 'ok' ? 200 : 400;
      out = schema === 'ok' ? { oriAddr: body.oriAddr, msgId: body.msgId }
                            : { title: 'Bad Request', status: 400, detail: JSON.stringify(schema) };
      if (schema === 'ok' && body.destAddr.addr.startsWith('refuse'))
        [status, out] = [403, { title: 'Forbidden', status: 403, detail: 'destAddr refused by the stand-in', cause: 'NOT_AUTHORIZED' }];
    } else if (path === '/msgs-msgdelivery/v1/deliver-report' && method === 'POST') {
      schema = schemaCheck('DeliveryStatusReport', body);
      status = schema === 'ok' ? 204 : 400;
    } else {
      status = 404; out = { title: 'Not Found', status: 404, detail: 'no such resource' };
    }
    appendFileSync(log, JSON.stringify({
      path, method, contentType: headers['content-type'], peer: pc.subjectaltname, auth, body,
      schema, status,
    }) + '\n');
    const h = { ':status': status };
    if (out) h['content-type'] = status >= 400 && !out.error ? 'application/problem+json' : 'application/json';
    stream.respond(h);
    stream.end(out ? JSON.stringify(out) : undefined);
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log('m5s stand-in: listening'));
