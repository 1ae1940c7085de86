#!/usr/bin/env bash
# Integration: wire conformance of the TS 29.538 bodies end to end (docs/northbound.md,
# docs/protocol.md):
#  - an ASMessageDelivery without payload (optional in the schema) is accepted and reaches the
#    UE as "payload":"";
#  - failureCause is 1-256 bytes of printable UTF-8 on both report paths and is passed through
#    intact: the AS's deliver-report (on a message the UE sent) with a multi-byte failureCause
#    reaches the UE's IMDN byte for byte; a UE's IMDN (raw CoAP, coap_raw.py) with one reaches
#    the AS's deliver-report (on the AS's message that asked for one; the AS stand-in checks
#    every body strictly against TS 29.538);
#  - refused naming failureCause: a control character, invalid UTF-8, 257 bytes, empty (400
#    INVALID_MSG_FORMAT with invalidParams[0].param failureCause / 4.00 with the IE in the
#    diagnostic), and nothing of it is stored or forwarded.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
RAW="$M5_SRC/tests/interop/coap_raw.py"
SUPI1=001010000000901
KAUSF1=a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0

make_pki
start_aanf
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1_TLS=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
[[ -n $AKID1 && -n $KAF1_TLS ]] || fail "m5ctl akma derive gave no A-KID/K_AF"
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
AS_PORT=$(pick_port)
AS_LOG=$M5_TMP/as.log
: >"$AS_LOG"
start_push_receiver tests/interop/as_server.mjs "$AS_PORT" "$AS_LOG" "$M5_TMP/as.mode" \
  "$M5_TMP/as_server.out"
admin_curl -sf -o /dev/null -X PUT -H 'content-type: application/json' \
  -d "{\"targets\":[\"localhost:$AS_PORT\"]}" "$M5S_ADMIN/admin/v1/as-clients/as1"

nb() { # PATH BODY_FILE: as1 POSTs it -> $ST, out.json
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -o out.json -w '%{http_code}' -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' --data-binary "@$2" "$NB$1")
}
TOKEN=$(curl -s --http2 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" --key "$PKI/as1.key" \
  -d grant_type=client_credentials "$NB/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[[ -n $TOKEN ]] || m5s_fail "no token for as1"
printf '{"asSvcId":"as1","targetUri":"https://localhost:%s/msgin5g/"}' "$AS_PORT" >reg.json
nb /msgs-asregistration/v1/registrations reg.json
[[ $ST == 201 ]] || m5s_fail "as1 registration: $ST $(cat out.json)"

# failureCause texts: multi-byte UTF-8 (2, 3 and 4 bytes), quotes and spaces
CAUSE='capteur «réservoir» hors ligne: 水位 💧 "7"'
CAUSE_JSON=$(printf '%s' "$CAUSE" | $PY -c 'import json,sys; print(json.dumps(sys.stdin.buffer.read().decode(), ensure_ascii=False))')
LONG257=$(printf 'x%.0s' {1..257})
LONG256=$(printf 'é%.0s' {1..128}) # 256 bytes

# ---- AS -> UE --------------------------------------------------------------------------------
printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"empty-1","stoAndFwInd":true}' >empty.json
validate TS29538_MSGS_MSGDelivery.yaml ASMessageDelivery empty.json
nb /msgs-msgdelivery/v1/deliver-as-message empty.json
[[ $ST == 200 ]] || m5s_fail "an ASMessageDelivery without payload: $ST $(cat out.json)"
validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
[[ $(json_get out.json status) == DELY_STORED ]] || m5s_fail "no payload, UE offline: $(cat out.json)"

# ue1's messages m-1 and m-2 to as1, asking for a report: the AS's reports below are on them (a
# report to a UE on nothing it sent is dropped: docs/delivery.md "Re-bound UE Service IDs").
sent() {
  printf '{"msgType":"MSG","oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"AS","addr":"as1"},"msgId":"%s","payload":"aGk=","delivStReqInd":true}' "$1"
}
timeout 60 "$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$KAF1_TLS" --akid "$AKID1" --timeout 10 -- \
  reg:ue1 'expect:2.01|2.04' "json:$(sent m-1)" expect:2.04 "json:$(sent m-2)" expect:2.04 \
  >sent.out 2>&1 || m5s_fail "ue1's messages to as1: $(cat sent.out)"

report() { # FILE CAUSE_JSON [MSGID]: a DeliveryStatusReport of as1 on ue1's message (m-1)
  printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"%s","delivSt":"REPT_DELY_FAILED","failureCause":%s}' "${3:-m-1}" "$2" >"$1"
}
report rep-good.json "$CAUSE_JSON"
validate TS29538_MSGS_MSGDelivery.yaml DeliveryStatusReport rep-good.json
nb /msgs-msgdelivery/v1/deliver-report rep-good.json
[[ $ST == 200 ]] || m5s_fail "a report with a UTF-8 failureCause: $ST $(cat out.json)"
report rep-256.json "\"$LONG256\"" m-2
nb /msgs-msgdelivery/v1/deliver-report rep-256.json
[[ $ST == 200 ]] || m5s_fail "a report with a 256-byte failureCause: $ST $(cat out.json)"
bad_report() { # NAME CAUSE_JSON_BYTES: 400 naming failureCause
  report "rep-$1.json" "$2" "m-$1"
  nb /msgs-msgdelivery/v1/deliver-report "rep-$1.json"
  [[ $ST == 400 ]] || m5s_fail "failureCause $1: want 400, got $ST $(cat out.json)"
  expect_problem out.json 400 INVALID_MSG_FORMAT failureCause
}
bad_report control '"bell\u0007"'
bad_report newline '"two\nlines"'
bad_report c1 '"csi\u009b"'
bad_report long "\"$LONG257\""
bad_report empty '""'
bad_report utf8 "$(printf '"bad \xff byte"')"
echo "ok: deliver-report: UTF-8 failureCause up to 256 bytes taken; control characters, invalid UTF-8, 257 bytes, empty: 400 naming it"

timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 3 --timeout 15 >listen.out 2>&1 || m5s_fail "ue1 listen: $(cat listen.out)"
grep -q '"msgType":"MSG","oriAddr":{"addrType":"AS","addr":"as1"},.*"msgId":"empty-1","payload":""' listen.out ||
  m5s_fail "the message without payload did not reach ue1 as \"payload\":\"\": $(cat listen.out)"
grep -qF "\"msgId\":\"m-1\",\"delivSt\":\"REPT_DELY_FAILED\",\"failureCause\":$CAUSE_JSON}" listen.out ||
  m5s_fail "the UTF-8 failureCause did not reach ue1 intact: $(cat listen.out)"
grep -qF "\"failureCause\":\"$LONG256\"}" listen.out || m5s_fail "the 256-byte failureCause: $(cat listen.out)"
[[ $(grep -c '"msgType":"IMDN"' listen.out) == 2 ]] || m5s_fail "a refused report was forwarded: $(cat listen.out)"
echo "ok: a message without payload reaches the UE as \"payload\":\"\"; failureCause passed through intact"

# ---- UE -> AS: IMDN over raw CoAP (TLS) ------------------------------------------------------
# as1's a-1 asks ue1 for a report (stored: ue1 is offline; pushed when it registers below)
printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"a-1","payload":"aGk=","stoAndFwInd":true,"delivStReqInd":true}' >a-1.json
nb /msgs-msgdelivery/v1/deliver-as-message a-1.json
[[ $ST == 200 ]] || m5s_fail "a-1: $ST $(cat out.json)"
imdn() { # CAUSE_JSON: ue1's IMDN to as1 on as1's message a-1
  printf '{"msgType":"IMDN","oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"AS","addr":"as1"},"msgId":"a-1","delivSt":"REPT_DELY_FAILED","failureCause":%s}' "$1"
}
timeout 60 "$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$KAF1_TLS" --akid "$AKID1" --timeout 10 -- \
  reg:ue1 'expect:2.01|2.04' recv:msgid=a-1 \
  "json:$(imdn '"bell\u0007"')" 'expect:4.00:diag~failureCause' \
  "json:$(imdn "\"$LONG257\"")" 'expect:4.00:diag~failureCause' \
  "json:$(imdn '""')" 'expect:4.00:diag~failureCause' \
  "json:$(imdn "$(printf '"bad \xff byte"')")" 'expect:4.00:diag~failureCause:diag~not valid UTF-8' \
  "json:$(imdn "$CAUSE_JSON")" 'expect:2.04' >raw.out 2>&1 ||
  m5s_fail "coap_raw IMDNs: $(cat raw.out)"
for ((i = 0; i < 100; i++)); do
  grep -q '"path":"/msgin5g/deliver-report"' "$AS_LOG" && break
  sleep 0.1
done
$PY - "$AS_LOG" "$CAUSE" <<'EOF2' || m5s_fail "the AS did not get ue1's report intact: $(cat "$AS_LOG")"
import json, sys
want = sys.argv[2].encode("utf-8", "surrogateescape").decode("utf-8")
rs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
reps = [r for r in rs if r["path"] == "/msgin5g/deliver-report"]
assert len(reps) == 1, "want exactly the one valid report: %r" % reps
assert reps[0]["schema"] == "ok", reps[0]
body = json.loads(reps[0]["body"])
assert body["failureCause"] == want, (body["failureCause"], want)
assert body["oriAddr"] == {"addrType": "UE", "addr": "ue1"} and body["msgId"] == "a-1", body
assert all(r["schema"] == "ok" for r in rs), rs
EOF2
echo "ok: IMDN: bad failureCause 4.00 naming it; a UTF-8 one reaches the AS intact"
stop_m5s
