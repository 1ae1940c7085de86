// What the node test peers that receive m5s's pushes share (tests/interop/as_server.mjs, an
// Application Server; tests/it/gw_receiver.mjs, a message gateway's delivery service), so both
// record and judge what m5s sends the same way: node's own HTTP/2 over TLS server requiring a
// client certificate from the test CA (m5s authenticates with its own). Every request becomes
// one JSON line in LOG: {path, method, contentType, peer (the client certificate's subject CN
// and SAN), body, schema}. Each body is checked against TS 29.538 in strict mode (openapi.mjs:
// only the members the schema declares): `schema` is "ok" or the errors, and a body that fails
// is answered 400 (a peer that checks what it gets refuses it). Otherwise the answer is the
// status in the file MODE_FILE (default 204), so a test can play a peer that fails; a second
// number there holds each answer that many milliseconds (a slow peer: "204 1500").
// The command line of every such peer: node NAME.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR
import http2 from 'node:http2';
import { readFileSync, appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { openapiValidator } from './openapi.mjs';

// Runs the peer called name (its usage and "NAME: listening" line). schemaOf(path) names what a
// request to path must hold: [the YAML file in OPENAPI_DIR, the schema in it], or a string
// saying why path is no operation of the peer (recorded as its schema error, answered 400).
export function runPushReceiver(name, schemaOf) {
  const [port, key, cert, ca, log, modeFile, openapiDir] = process.argv.slice(2);
  if (!openapiDir) {
    console.error(`usage: node ${name}.mjs PORT KEY CERT CA LOG MODE_FILE OPENAPI_DIR`);
    process.exit(2);
  }
  const check = openapiValidator(openapiDir, { strict: true });

  function schemaCheck(path, text) {
    const r = schemaOf(path);
    if (typeof r === 'string') return [r];
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
      const mode = existsSync(modeFile) ? readFileSync(modeFile, 'utf8').trim().split(/\s+/) : [];
      const status = schema !== 'ok' ? 400 : Number(mode[0] || 204);
      const answer = () => {
        if (stream.destroyed) return;
        stream.respond({ ':status': status });
        stream.end();
      };
      if (Number(mode[1]) > 0) setTimeout(answer, Number(mode[1]));
      else answer();
    });
  });
  server.listen(Number(port), '127.0.0.1', () => console.log(`${name}: listening`));
}
