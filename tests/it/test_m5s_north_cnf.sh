#!/usr/bin/env bash
# Integration: m5s's bearer check refuses its own tokens unless they are bound to the
# presenting client certificate (RFC 8705 §3.1 cnf x5t#S256; docs/northbound.md). Tokens are
# signed with m5s's own key by tests/it/token_forge (m5s's C issuing code, oauth/jwt.h) with the
# claims m5s's token endpoint would give as1, changing only cnf:
#  - bound to as1's certificate: MSGS_ASRegistration accepts it (201), the control;
#  - without cnf: 401, WWW-Authenticate error="invalid_token" with the description naming the
#    missing binding, ProblemDetails INVALID_TOKEN; nothing registered;
#  - bound to another certificate: 401 as well.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
start_m5s
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
FORGE="$M5_BIN/token_forge"
admin_curl -sf -o /dev/null -X PUT -H 'content-type: application/json' -d '{"targets":["127.0.0.1:9"]}' \
  "$M5S_ADMIN/admin/v1/as-clients/as1"
X5T=$(openssl x509 -in "$PKI/as1.crt" -outform DER | openssl dgst -sha256 -binary | base64 -w0 |
  tr '+/' '-_' | tr -d '=')
OTHER=$(openssl x509 -in "$PKI/m5s.crt" -outform DER | openssl dgst -sha256 -binary | base64 -w0 |
  tr '+/' '-_' | tr -d '=')

register() { # TOKEN: as1 POSTs a registration with it -> $ST, out.json, hdr.txt
  ST=$(curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -D hdr.txt -o out.json -w '%{http_code}' \
    -H 'content-type: application/json' -H "authorization: Bearer $1" \
    -d '{"asSvcId":"as1","targetUri":"https://127.0.0.1:9/cb"}' \
    "$NB/msgs-asregistration/v1/registrations")
}
forge() { # X5T|- [EXP_IN_S]: a token for as1 with every scope m5s grants
  "$FORGE" "$PKI/m5s-token.key" "$NB" "$NB" as1 "msgs-asregistration msgs-msgdelivery" "$@" ||
    m5s_fail "token_forge $1 failed"
}
registered() { admin_curl -s "$M5S_ADMIN/admin/v1/as-clients/as1" | grep -q '"registered":true'; }

# without cnf
register "$(forge -)"
[[ $ST == 401 ]] || m5s_fail "an unbound token of m5s's own: want 401, got $ST $(cat out.json)"
grep -qi '^www-authenticate: Bearer realm="msgin5g", error="invalid_token", error_description="token is not bound to a client certificate (cnf x5t#S256)"' hdr.txt ||
  m5s_fail "unbound token: WWW-Authenticate: $(cat hdr.txt)"
expect_problem out.json 401 INVALID_TOKEN
! registered || m5s_fail "an unbound token registered as1"
echo "ok: m5s's own token without cnf: 401 invalid_token, not bound to a client certificate"

# bound to another certificate
register "$(forge "$OTHER")"
[[ $ST == 401 ]] || m5s_fail "a token bound to another certificate: want 401, got $ST $(cat out.json)"
grep -qi 'error="invalid_token"' hdr.txt || m5s_fail "other cnf: $(cat hdr.txt)"
! registered || m5s_fail "a token bound to another certificate registered as1"
echo "ok: bound to another certificate: 401"

# the control: the same claims bound to as1's certificate
register "$(forge "$X5T")"
[[ $ST == 201 ]] || m5s_fail "a bound token from token_forge: want 201, got $ST $(cat out.json)"
registered || m5s_fail "the bound token's registration is not shown"
echo "ok: the same token bound to as1's certificate: 201"

# A token in use when it expires: m5s remembers verified tokens (north_tokcache.c) but not past
# their exp. This one's exp + m5s's leeway of 30 s is 10 s from now: accepted now (and
# remembered), refused once that passed, whatever m5s remembers of it.
T=$(forge "$X5T" -20)
register "$T"
[[ $ST == 20? ]] || m5s_fail "a token 10 s before its exp + leeway: want 2xx, got $ST $(cat out.json)"
ok=1
for ((i = 0; i < 300; i++)); do
  register "$T"
  [[ $ST == 401 ]] && break
  [[ $ST == 20? ]] || m5s_fail "an expiring token: want 2xx then 401, got $ST $(cat out.json)"
  ok=$((ok + 1))
  sleep 0.1
done
[[ $ST == 401 ]] || m5s_fail "a token past its exp + leeway is still accepted"
grep -qi 'error_description="token has expired"' hdr.txt || m5s_fail "expired: $(cat hdr.txt)"
echo "ok: a token accepted $ok times until its exp + leeway, then 401 token has expired"
stop_m5s
