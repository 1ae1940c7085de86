#!/usr/bin/env bash
# Interop: m5s's access tokens against node's `jose` (tests/schema/north_tokens.mjs).
#  - jose verifies a token from POST /oauth2/token with the JWKS from
#    /.well-known/jwks.json (ES256, typ at+jwt, iss, aud, cnf x5t#S256 = the AS's certificate);
#  - jose forges, with m5s's own signing key where a signature is needed, the tokens m5s must
#    refuse on MSGS_ASRegistration: alg none, HS256 keyed with the public key, unknown kid, a
#    key shipped in the header, tampered, typ JWT, oversized, expired, not yet valid, wrong
#    audience, wrong issuer, unbound, bound to another certificate, issued to another AS
#    (401 invalid_token), and the wrong scope (403 insufficient_scope); a correct forged token
#    (the control) is accepted.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
start_m5s
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
JOSE=("node" "$M5_SRC/tests/schema/north_tokens.mjs")
admin_curl -s -o /dev/null -X PUT -H 'content-type: application/json' -d '{"targets":["127.0.0.1:9"]}' \
  "$M5S_ADMIN/admin/v1/as-clients/as1"
admin_curl -s -o /dev/null -X PUT -H 'content-type: application/json' -d '{"targets":["127.0.0.1:9"]}' \
  "$M5S_ADMIN/admin/v1/as-clients/as2"

nb() { # METHOD PATH [curl args]: as1 over HTTP/2 -> $ST, out.json, hdr.txt
  local method=$1 path=$2
  shift 2
  ST=$(curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -X "$method" -D hdr.txt -o out.json -w '%{http_code}' "$@" "$NB$path")
}

nb POST /oauth2/token -H 'content-type: application/x-www-form-urlencoded' \
  -d grant_type=client_credentials
[[ $ST == 200 ]] || m5s_fail "token: $ST $(cat out.json)"
TOKEN=$(json_get out.json access_token)
nb GET /.well-known/jwks.json
[[ $ST == 200 ]] || m5s_fail "jwks: $ST"
cp out.json jwks.json
payload=$("${JOSE[@]}" verify "$TOKEN" jwks.json "$NB" "$NB") || m5s_fail "jose refused m5s's token"
X5T=$(openssl x509 -in "$PKI/as1.crt" -outform DER | openssl dgst -sha256 -binary | base64 -w0 |
  tr '+/' '-_' | tr -d '=')
grep -q "\"x5t#S256\":\"$X5T\"" <<<"$payload" || m5s_fail "cnf is not as1's certificate: $payload"
grep -q '"sub":"as1"' <<<"$payload" && grep -q '"client_id":"as1"' <<<"$payload" ||
  m5s_fail "sub/client_id: $payload"
echo "ok: jose verifies m5s's token (ES256, at+jwt, iss, aud, cnf = as1's certificate)"

register() { # TOKEN: POST a registration of as1 with it
  nb POST /msgs-asregistration/v1/registrations -H 'content-type: application/json' \
    -H "authorization: Bearer $1" -d '{"asSvcId":"as1","targetUri":"https://127.0.0.1:9/cb"}'
}
for kind in none hs256 kid jwk tampered typ big expired notyet aud iss nocnf othercnf sub scope good; do
  tok=$("${JOSE[@]}" forge "$kind" "$PKI/m5s-token.key" "$NB" "$NB" as1 "$X5T") ||
    m5s_fail "jose could not forge $kind"
  register "$tok"
  case $kind in
  good) want=201 err= ;;
  scope) want=403 err=insufficient_scope ;;
  *) want=401 err=invalid_token ;;
  esac
  [[ $ST == "$want" ]] || m5s_fail "forged $kind: want $want, got $ST $(cat out.json)"
  [[ -z $err ]] || grep -qi "^www-authenticate: Bearer .*error=\"$err\"" hdr.txt ||
    m5s_fail "forged $kind: no RFC 6750 $err challenge: $(cat hdr.txt)"
  [[ $kind == good ]] || ! grep -q "$tok" "$M5S_LOG" || m5s_fail "a token was logged"
done
echo "ok: every forged token refused with its RFC 6750 error; the control accepted"
stop_m5s
