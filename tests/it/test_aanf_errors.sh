#!/usr/bin/env bash
# m5-aanf under bad input and unauthorised callers (TS 29.535 / TS 29.500 statuses, TS 29.571
# ProblemDetails): each case gets its precise status, cause and JSON pointer, and the AAnF
# keeps serving a good request right after it. TLS-level refusals are checked with curl and
# openssl s_client: no client certificate, TLS 1.1, HTTP/1.1 (ALPN) on the HTTP/2 port.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI=001010123456789
KAUSF=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f

make_pki
make_cert other "DNS:other.example"   # a CA-signed AF that is not on the allow-list
make_cert liar "DNS:liar.example"     # on the allow-list, but asks for another afId below
start_aanf "afs: {allowed: [localhost, liar.example]}"

"$M5_BIN/m5ctl" subscriber add --supi "$SUPI" --kausf "$KAUSF" --aanf "$AANF_URL" \
  --pki "$M5_TMP/pki" >/dev/null
AKID=$("$M5_BIN/m5ctl" akma derive --supi "$SUPI" --kausf "$KAUSF" --af-fqdn localhost |
  sed -n 's/^akid=//p')
printf '{"afId":"localhost","aKId":"%s"}' "$AKID" >good.json

# still_serving: the good request right after a bad one.
still_serving() {
  local st
  st=$(aanf_post retrieve-applicationkey good.json m5s good.out)
  [[ $st == 200 ]] || fail "after $1: the good request got $st"
  validate_sent TS29522_AKMA.yaml AkmaAfKeyData good.out
}

# bad NAME PATH CERT BODY STATUS CAUSE [PARAM]: one bad request and its exact answer.
bad() {
  local name=$1 path=$2 cert=$3 body=$4 status=$5 cause=$6 param=${7:-}
  printf '%s' "$body" >"$name.json"
  local st
  st=$(aanf_post "$path" "$name.json" "$cert" "$name.out")
  [[ $st == "$status" ]] || fail "$name: status $st, want $status: $(cat "$name.out")"
  expect_problem "$name.out" "$status" "$cause" "$param"
  still_serving "$name"
}

K=$("$M5_BIN/m5ctl" akma derive --supi "$SUPI" --kausf "$KAUSF" --af-fqdn localhost |
  sed -n 's/^kakma=//p')
R=register-anchorkey
G=retrieve-applicationkey

bad malformed $G m5s '{"afId":"localhost","aKId":' 400 INVALID_MSG_FORMAT
bad not_object $G m5s '["afId"]' 400 INVALID_MSG_FORMAT
bad duplicate $G m5s "{\"afId\":\"localhost\",\"aKId\":\"$AKID\",\"aKId\":\"x@y\"}" \
  400 INVALID_MSG_FORMAT
bad dup_register $R ausf \
  "{\"supi\":\"imsi-$SUPI\",\"aKId\":\"a@b\",\"kAkma\":\"$K\",\"kAkma\":\"$K\"}" \
  400 INVALID_MSG_FORMAT
bad no_akid $G m5s '{"afId":"localhost"}' 400 MANDATORY_IE_MISSING /aKId
bad no_afid $G m5s "{\"aKId\":\"$AKID\"}" 400 MANDATORY_IE_MISSING /afId
bad no_kakma $R ausf "{\"supi\":\"imsi-$SUPI\",\"aKId\":\"a@b\"}" 400 MANDATORY_IE_MISSING /kAkma
bad short_kakma $R ausf "{\"supi\":\"imsi-$SUPI\",\"aKId\":\"a@b\",\"kAkma\":\"${K:0:62}\"}" \
  400 MANDATORY_IE_INCORRECT /kAkma
bad nai_supi $R ausf "{\"supi\":\"nai-u@example.org\",\"aKId\":\"a@b\",\"kAkma\":\"$K\"}" \
  400 MANDATORY_IE_INCORRECT /supi
bad akid_type $G m5s '{"afId":"localhost","aKId":42}' 400 MANDATORY_IE_INCORRECT /aKId
bad bad_ua $G m5s "{\"afId\":\"localhost\",\"aKId\":\"$AKID\",\"uaSecProtId\":\"tls13\"}" \
  400 OPTIONAL_IE_INCORRECT /uaSecProtId
bad rm_no_supi remove-context ausf '{}' 400 MANDATORY_IE_MISSING /supi
bad not_allowed $G other '{"afId":"other.example","aKId":"x@y"}' 403 AF_NOT_ALLOWED
bad wrong_san $G liar "{\"afId\":\"localhost\",\"aKId\":\"$AKID\"}" 403 AF_NOT_ALLOWED
bad af_registers $R m5s "{\"supi\":\"imsi-$SUPI\",\"aKId\":\"a@b\",\"kAkma\":\"$K\"}" \
  403 ROLE_NOT_ALLOWED
bad af_removes remove-context m5s "{\"supi\":\"imsi-$SUPI\"}" 403 ROLE_NOT_ALLOWED
bad unknown_path nonexistent m5s '{}' 404 RESOURCE_URI_STRUCTURE_NOT_FOUND

# The refused registration by an AF did not replace the context: the good request above
# kept working, and the liar's own afId still works with its own certificate.
printf '{"afId":"liar.example","aKId":"%s"}' "$AKID" >liar_ok.json
st=$(aanf_post $G liar_ok.json liar liar_ok.out)
[[ $st == 200 ]] || fail "an allowed AF asking for its own afId: $st"

# Wrong content type: 415.
st=$(curl -s --http2 --max-time 10 --cacert pki/ca.crt --cert pki/m5s.crt --key pki/m5s.key \
  -H 'content-type: text/plain' --data-binary @good.json -o ct.out -w '%{http_code}' \
  "$AANF_URL/naanf-akma/v1/$G")
[[ $st == 415 ]] || fail "text/plain: $st"
validate_sent TS29571_CommonData.yaml ProblemDetails ct.out
still_serving content-type

# Wrong method: 405 with Allow.
hdrs=$(curl -s --http2 --max-time 10 --cacert pki/ca.crt --cert pki/m5s.crt --key pki/m5s.key \
  -D - -o method.out "$AANF_URL/naanf-akma/v1/$G")
grep -q '^HTTP/2 405' <<<"$hdrs" || fail "GET: $hdrs"
grep -qi '^allow: POST' <<<"$hdrs" || fail "405 without Allow: $hdrs"
still_serving method

# Oversized body: 413 from the HTTP layer (http.max_body 16384 by default).
head -c 20000 /dev/zero | tr '\0' 'a' >big.json
st=$(aanf_post $G big.json m5s big.out)
[[ $st == 413 ]] || fail "20000-byte body: $st"
still_serving oversized

# No client certificate: the handshake is refused, no HTTP answer at all.
rc=0
st=$(aanf_post $G good.json - nocert.out) || rc=$?
[[ $rc -ne 0 && $st == 000 ]] || fail "no client certificate: curl rc=$rc status=$st"
still_serving no-cert

# TLS 1.1: refused by the server (the client is allowed to offer it: SECLEVEL=0).
rc=0
timeout 10 openssl s_client -connect "127.0.0.1:$AANF_PORT" -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' \
  -cert pki/m5s.crt -key pki/m5s.key -CAfile pki/ca.crt </dev/null >tls11.out 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "TLS 1.1 handshake succeeded"
grep -q "no protocols available" tls11.out && fail "the client never offered TLS 1.1"
grep -qi "alert protocol version\|unsupported protocol\|wrong version" tls11.out ||
  fail "TLS 1.1 not refused by version: $(tail -5 tls11.out)"
still_serving tls1.1

# HTTP/1.1 on the HTTP/2 port: ALPN offers only http/1.1 and is refused.
rc=0
curl -s --http1.1 --max-time 10 --cacert pki/ca.crt --cert pki/m5s.crt --key pki/m5s.key \
  -H 'content-type: application/json' --data-binary @good.json -o h1.out -w '%{http_code}' \
  "$AANF_URL/naanf-akma/v1/$G" >h1.status 2>h1.err || rc=$?
[[ $rc -ne 0 && $(cat h1.status) == 000 ]] || fail "HTTP/1.1: rc=$rc status=$(cat h1.status)"
still_serving http1.1

# Secrets never logged, even for refused requests.
grep -qi "$K" "$AANF_LOG" && fail "K_AKMA in the log"
grep -q "403 caller=DNS\|403 caller=other.example" "$AANF_LOG" ||
  fail "no log line naming the refused AF"
stop_aanf
echo "aanf errors: ok"
