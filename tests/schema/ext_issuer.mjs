// A stand-in external OAuth2 issuer for tests/interop/test_m5s_north_issuer.sh, on node's
// `jose` (panva). State lives in DIR: <kid>.jwk (private keys) and jwks.json (what is
// published; the test rewrites it to rotate keys).
//   node ext_issuer.mjs keygen DIR KID          adds a P-256 key
//   node ext_issuer.mjs publish DIR KID...      jwks.json = the public halves of these keys
//   node ext_issuer.mjs sign DIR KID CLAIMS     prints an ES256 at+jwt token (CLAIMS: JSON;
//                                               iat/exp/jti filled in when absent)
//   node ext_issuer.mjs serve DIR PORT KEY CERT serves GET /jwks.json over HTTPS
import * as jose from 'jose';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';

const [mode, dir, ...rest] = process.argv.slice(2);
if (mode === 'keygen') {
  const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  writeFileSync(`${dir}/${rest[0]}.jwk`, JSON.stringify({ ...(await jose.exportJWK(privateKey)), kid: rest[0] }));
} else if (mode === 'publish') {
  const keys = rest.map((kid) => {
    const { d, ...pub } = JSON.parse(readFileSync(`${dir}/${kid}.jwk`, 'utf8'));
    return { ...pub, use: 'sig', alg: 'ES256' };
  });
  writeFileSync(`${dir}/jwks.json`, JSON.stringify({ keys }));
} else if (mode === 'sign') {
  const jwk = JSON.parse(readFileSync(`${dir}/${rest[0]}.jwk`, 'utf8'));
  const key = await jose.importJWK(jwk, 'ES256');
  const now = Math.floor(Date.now() / 1000);
  const claims = { iat: now, exp: now + 300, jti: `j${now}${Math.random()}`, ...JSON.parse(rest[1]) };
  process.stdout.write(await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: rest[0] }).sign(key));
} else if (mode === 'serve') {
  const [port, key, cert] = rest;
  https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    if (req.url !== '/jwks.json') { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
    res.end(readFileSync(`${dir}/jwks.json`));
  }).listen(Number(port), '127.0.0.1', () => console.log('ext_issuer: listening'));
} else {
  console.error('usage: keygen|publish|sign|serve DIR ...');
  process.exit(2);
}
