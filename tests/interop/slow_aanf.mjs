// A slow AAnF for the AKMA flood test (tests/interop/test_m5s_akma_flood.sh): node's own
// HTTP/2 over TLS server with the dev PKI's AAnF certificate, requiring a client certificate
// from the test CA as m5-aanf does. POST /naanf-akma/v1/retrieve-applicationkey:
//  - a request whose aKId is listed in REAL_FILE (one per line, read at each request) is
//    passed at once to the real m5-aanf at REAL_URL, with the client certificate given here
//    (m5s's own, so the real AAnF sees the same afId), and its answer relayed;
//  - any other is counted, held DELAY_MS, then answered 204 (no context).
// After every change it writes {"count":N,"inflight":I,"maxInflight":M,"real":R} to COUNT_FILE
// (count: the flood requests received; inflight: those not answered yet, also the ones m5s
// reset; maxInflight: the most at once).
//   node slow_aanf.mjs PORT KEY CERT CA REAL_URL CLIENT_CERT CLIENT_KEY REAL_FILE DELAY_MS COUNT_FILE
import http2 from 'node:http2';
import { readFileSync, writeFileSync, existsSync, renameSync } from 'node:fs';

const [port, key, cert, ca, realUrl, cliCert, cliKey, realFile, delayMs, countFile] =
  process.argv.slice(2);
const state = { count: 0, inflight: 0, maxInflight: 0, real: 0 };
let dirty = false;
const flush = () => {
  if (!dirty) return;
  dirty = false;
  // Whole or not at all: the test reads it meanwhile.
  writeFileSync(`${countFile}.tmp`, JSON.stringify(state));
  renameSync(`${countFile}.tmp`, countFile);
};
setInterval(flush, 50);
const touch = () => { dirty = true; };
touch();

let upstream = null;
const realSession = () => {
  if (upstream && !upstream.closed && !upstream.destroyed) return upstream;
  upstream = http2.connect(realUrl, {
    ca: readFileSync(ca), cert: readFileSync(cliCert), key: readFileSync(cliKey),
  });
  upstream.on('error', () => { upstream = null; });
  return upstream;
};

const server = http2.createSecureServer({
  key: readFileSync(key), cert: readFileSync(cert), ca: readFileSync(ca),
  requestCert: true, rejectUnauthorized: true, allowHTTP1: false,
  settings: { maxConcurrentStreams: 100000 },
});
server.on('sessionError', () => {});
server.on('stream', (stream, headers) => {
  stream.on('error', () => {});
  const chunks = [];
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    let akid = '';
    try { akid = JSON.parse(body).aKId || ''; } catch { /* counted as flood */ }
    const real = existsSync(realFile) &&
      readFileSync(realFile, 'utf8').split('\n').some((l) => l.trim() && l.trim() === akid);
    if (real) {
      state.real++;
      touch();
      const up = realSession().request({
        ':method': 'POST', ':path': headers[':path'], 'content-type': 'application/json',
      });
      const resp = [];
      let status = 502;
      up.on('response', (h) => { status = h[':status']; });
      up.on('data', (c) => resp.push(c));
      up.on('end', () => {
        if (stream.destroyed) return;
        const out = Buffer.concat(resp);
        stream.respond({ ':status': status, ...(out.length ? { 'content-type': 'application/json' } : {}) });
        stream.end(out);
      });
      up.on('error', () => { if (!stream.destroyed) { stream.respond({ ':status': 502 }); stream.end(); } });
      up.end(body);
      return;
    }
    state.count++;
    state.inflight++;
    state.maxInflight = Math.max(state.maxInflight, state.inflight);
    touch();
    setTimeout(() => {
      state.inflight--;
      touch();
      if (stream.destroyed || stream.closed) return;
      stream.respond({ ':status': 204 });
      stream.end();
    }, Number(delayMs));
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log('slow_aanf: listening'));
process.on('SIGTERM', () => { flush(); process.exit(0); });
