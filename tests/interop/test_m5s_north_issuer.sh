#!/usr/bin/env bash
# Interop: tokens of an external OAuth2 issuer (oauth.issuer_url + oauth.jwks_url,
# docs/northbound.md), played by node's `jose` (tests/schema/ext_issuer.mjs) with its JWKS on a
# node HTTPS server:
#  - its ES256 at+jwt token for as1 (iss = the issuer, aud = m5s, no cnf) registers as1; the
#    same token with another aud, another iss, another AS's sub, or a cnf of another
#    certificate is refused (401);
#  - key rotation by kid: a token under a new kid is refused until m5s fetched the new JWKS
#    (an unknown kid triggers the fetch), then accepted; a withdrawn key is refused after the
#    periodic refresh;
#  - m5s starts while the JWKS server is down and accepts tokens once it is up.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
PKI=$M5_TMP/pki
ISS=$M5_TMP/issuer
mkdir -p "$ISS"
J=(node "$M5_SRC/tests/schema/ext_issuer.mjs")
"${J[@]}" keygen "$ISS" k1
"${J[@]}" keygen "$ISS" k2
"${J[@]}" publish "$ISS" k1
JWKS_PORT=$(pick_port)
start_aanf
start_m5s "oauth: {key: $PKI/m5s-token.key, issuer_url: https://issuer.test, jwks_url: https://localhost:$JWKS_PORT/jwks.json, jwks_refresh_s: 2}"
NB="https://localhost:$M5S_NORTH"
admin_curl -s -o /dev/null -X PUT -H 'content-type: application/json' -d '{"targets":["127.0.0.1:9"]}' \
  "$M5S_ADMIN/admin/v1/as-clients/as1"

register() { # TOKEN -> $ST
  ST=$(curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -o out.json -w '%{http_code}' -H "authorization: Bearer $1" \
    -H 'content-type: application/json' -d '{"asSvcId":"as1"}' "$NB/msgs-asregistration/v1/registrations")
}
sign() { # KID [CLAIMS overrides as JSON members]
  "${J[@]}" sign "$ISS" "$1" "{\"iss\":\"https://issuer.test\",\"aud\":\"$NB\",\"sub\":\"as1\",\"client_id\":\"as1\",\"scope\":\"msgs-asregistration\"${2:-}}"
}

# the JWKS server is down: no keys yet
register "$(sign k1)"
[[ $ST == 401 ]] || m5s_fail "before the JWKS is reachable: want 401, got $ST"
"${J[@]}" serve "$ISS" "$JWKS_PORT" "$PKI/aanf.key" "$PKI/aanf.crt" >"$M5_TMP/issuer.out" 2>&1 &
track_pid $!
wait_file_line "$M5_TMP/issuer.out" listening 10 || fail "the issuer's JWKS server did not start"
ok=0
for ((i = 0; i < 40; i++)); do
  register "$(sign k1)"
  [[ $ST == 201 ]] && { ok=1; break; }
  sleep 0.25
done
((ok)) || m5s_fail "the external issuer's token was not accepted once its JWKS was up: $ST $(cat out.json)"
echo "ok: the external issuer's token registers as1 (keys fetched once the JWKS server is up)"

X5T_OTHER=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
for bad in ',"aud":"https://elsewhere.example"' ',"iss":"https://other-issuer.test"' \
  ',"sub":"as2","client_id":"as2"' ",\"cnf\":{\"x5t#S256\":\"$X5T_OTHER\"}" ',"exp":1'; do
  register "$(sign k1 "$bad")"
  [[ $ST == 401 ]] || m5s_fail "external token with $bad: want 401, got $ST"
done
echo "ok: wrong aud, iss, sub, cnf, exp refused"

# rotation: k2 appears; a token under k2 is refused until m5s refetched the JWKS
"${J[@]}" publish "$ISS" k1 k2
ok=0
for ((i = 0; i < 60; i++)); do
  register "$(sign k2)"
  [[ $ST == 201 ]] && { ok=1; break; }
  [[ $ST == 401 ]] || m5s_fail "rotation: unexpected $ST"
  sleep 0.25
done
((ok)) || m5s_fail "the rotated key k2 was never accepted"
# k1 withdrawn: refused after the next refresh (2 s)
"${J[@]}" publish "$ISS" k2
ok=0
for ((i = 0; i < 60; i++)); do
  register "$(sign k1)"
  [[ $ST == 401 ]] && { ok=1; break; }
  sleep 0.25
done
((ok)) || m5s_fail "the withdrawn key k1 is still accepted"
register "$(sign k2)"
[[ $ST == 201 ]] || m5s_fail "k2 after k1's withdrawal: $ST"
echo "ok: key rotation by kid, refreshed without blocking"
stop_m5s
