// PUTs many AS clients on m5s's management port at once over h2c, to fill the admin API's
// registry jobs in flight (tests/it/test_m5s_admin_busy.sh).
// Usage: node admin_flood.mjs URL SESSIONS STREAMS [TOKEN_FILE]
// Prints one JSON line: {"counts": {status: n}, "refused": [asSvcId of each 503],
// "noRetryAfter": 503s without Retry-After}.
import fs from 'node:fs';
import http2 from 'node:http2';

const [url, sessions, streams, tokenFile] = process.argv.slice(2);
const token = tokenFile ? fs.readFileSync(tokenFile, 'utf8').trim() : '';
const out = {counts: {}, refused: [], noRetryAfter: 0};
let pending = Number(sessions) * Number(streams);
for (let s = 0; s < Number(sessions); s++) {
  const c = http2.connect(url);
  c.on('error', (e) => {
    console.error(`admin_flood: ${e}`);
    process.exit(2);
  });
  let open = Number(streams);
  for (let i = 0; i < Number(streams); i++) {
    const id = `flood-${s}-${i}`;
    const h = {':method': 'PUT', ':path': `/admin/v1/as-clients/${id}`,
               'content-type': 'application/json'};
    if (token) h.authorization = `Bearer ${token}`;
    const r = c.request(h);
    r.end('{"targets":["127.0.0.1:9"]}');
    r.on('response', (hdr) => {
      const st = hdr[':status'];
      out.counts[st] = (out.counts[st] || 0) + 1;
      if (st === 503) {
        out.refused.push(id);
        if (hdr['retry-after'] !== '1') out.noRetryAfter++;
      }
    });
    r.resume();
    r.on('close', () => {
      if (--open === 0) c.close();
      if (--pending === 0) console.log(JSON.stringify(out));
    });
  }
}
