// The JOSE peer of tests/interop/test_m5s_north_jose.sh: node's `jose` (panva) checks the
// access tokens m5s issues and forges the bad ones m5s must refuse.
//
//   node north_tokens.mjs verify TOKEN JWKS_FILE ISSUER AUDIENCE
//     verifies TOKEN with the JWKS m5s published (ES256, typ at+jwt, iss, aud) and prints the
//     payload as JSON; exit 1 with the reason otherwise.
//   node north_tokens.mjs forge KIND KEY_PEM ISSUER AUDIENCE SUB X5T
//     prints one token of KIND, signed with m5s's own key unless KIND says otherwise:
//     good, none, hs256, expired, notyet, aud, iss, scope, nocnf, othercnf, kid, tampered, typ,
//     big, jwk, sub.
import * as jose from 'jose';
import { createPrivateKey, createPublicKey, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [mode, ...args] = process.argv.slice(2);
const b64u = (buf) => Buffer.from(buf).toString('base64url');

async function verify(token, jwksFile, issuer, audience) {
  const jwks = jose.createLocalJWKSet(JSON.parse(readFileSync(jwksFile, 'utf8')));
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    issuer, audience, typ: 'at+jwt', algorithms: ['ES256'], requiredClaims: ['jti', 'iat', 'exp', 'sub'],
  });
  if (!payload.cnf || typeof payload.cnf['x5t#S256'] !== 'string') throw new Error('no cnf x5t#S256');
  if (!protectedHeader.kid) throw new Error('no kid');
  process.stdout.write(JSON.stringify(payload));
}

async function forge(kind, keyFile, issuer, audience, sub, x5t) {
  const pem = readFileSync(keyFile, 'utf8');
  const key = createPrivateKey(pem);
  const kid = await jose.calculateJwkThumbprint(await jose.exportJWK(createPublicKey(key)));
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer, sub, aud: audience, client_id: sub, scope: 'msgs-asregistration msgs-msgdelivery',
    iat: now, exp: now + 300, jti: b64u(crypto.getRandomValues(new Uint8Array(16))),
    cnf: { 'x5t#S256': x5t },
  };
  let header = { alg: 'ES256', typ: 'at+jwt', kid };
  let signWith = key;
  switch (kind) {
    case 'good': break;
    case 'expired': claims.iat = now - 900; claims.exp = now - 600; break;
    case 'notyet': claims.iat = now + 600; claims.nbf = now + 600; claims.exp = now + 900; break;
    case 'aud': claims.aud = 'https://elsewhere.example'; break;
    case 'iss': claims.iss = 'https://rogue-issuer.example'; break;
    case 'scope': claims.scope = 'msgs-msgdelivery'; break;
    case 'nocnf': delete claims.cnf; break;
    case 'othercnf': claims.cnf = { 'x5t#S256': b64u(Buffer.alloc(32, 7)) }; break;
    case 'sub': claims.sub = 'as2'; claims.client_id = 'as2'; break;
    case 'typ': header.typ = 'JWT'; break;
    case 'big': claims.pad = 'x'.repeat(10000); break;
    case 'kid': {
      const { privateKey } = await jose.generateKeyPair('ES256');
      signWith = privateKey;
      header.kid = 'no-such-kid';
      break;
    }
    case 'jwk': { // a key shipped inside the token, under the real kid
      const { privateKey, publicKey } = await jose.generateKeyPair('ES256', { extractable: true });
      signWith = privateKey;
      header.jwk = await jose.exportJWK(publicKey);
      break;
    }
    case 'none': {
      const h = b64u(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid }));
      process.stdout.write(`${h}.${b64u(JSON.stringify(claims))}.`);
      return;
    }
    case 'hs256': { // algorithm confusion: HMAC keyed with the public key's PEM
      const pub = createPublicKey(key).export({ type: 'spki', format: 'pem' });
      const input = `${b64u(JSON.stringify({ alg: 'HS256', typ: 'at+jwt', kid }))}.${b64u(JSON.stringify(claims))}`;
      process.stdout.write(`${input}.${b64u(createHmac('sha256', pub).update(input).digest())}`);
      return;
    }
    case 'tampered': {
      const t = await new jose.SignJWT(claims).setProtectedHeader(header).sign(key);
      const [h, p, s] = t.split('.');
      const changed = { ...JSON.parse(Buffer.from(p, 'base64url')), scope: 'msgs-asregistration msgs-msgdelivery admin' };
      process.stdout.write(`${h}.${b64u(JSON.stringify(changed))}.${s}`);
      return;
    }
    default: throw new Error(`unknown kind ${kind}`);
  }
  process.stdout.write(await new jose.SignJWT(claims).setProtectedHeader(header).sign(signWith));
}

try {
  if (mode === 'verify') await verify(...args);
  else if (mode === 'forge') await forge(...args);
  else throw new Error('usage: verify TOKEN JWKS ISS AUD | forge KIND KEY ISS AUD SUB X5T');
} catch (e) {
  process.stderr.write(`north_tokens: ${e.code ?? ''} ${e.message}\n`);
  process.exit(1);
}
