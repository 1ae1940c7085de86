// A stand-in Application Server for the point-to-application tests: node's own HTTP/2 over
// TLS server, requiring a client certificate from the test CA (m5s authenticates with its
// own). Every request becomes one JSON line in LOG: {path, method, contentType, peer (the
// client certificate's subject CN and SAN), body}. It answers with the status in the file
// MODE_FILE (default 204; e.g. 503 to play a failing AS).
//   node as_server.mjs PORT KEY CERT CA LOG MODE_FILE
import http2 from 'node:http2';
import { readFileSync, appendFileSync, existsSync } from 'node:fs';

const [port, key, cert, ca, log, modeFile] = process.argv.slice(2);
const server = http2.createSecureServer({
  key: readFileSync(key), cert: readFileSync(cert), ca: readFileSync(ca),
  requestCert: true, rejectUnauthorized: true, allowHTTP1: false,
});
server.on('stream', (stream, headers) => {
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    const pc = stream.session.socket.getPeerCertificate();
    appendFileSync(log, JSON.stringify({
      path: headers[':path'], method: headers[':method'], contentType: headers['content-type'],
      peer: { cn: pc.subject && pc.subject.CN, san: pc.subjectaltname },
      body: Buffer.concat(chunks).toString('utf8'),
    }) + '\n');
    const status = existsSync(modeFile) ? Number(readFileSync(modeFile, 'utf8').trim()) : 204;
    stream.respond({ ':status': status });
    stream.end();
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log('as_server: listening'));
