#!/usr/bin/env bash
# Integration: reports as durable as what they report on, and quotas per originator
# (docs/delivery.md, docs/store.md):
#  - expiry reports across kill -9: ue1 (m5c) and as1 (deliver-as-message) send to ue2, registered
#    but offline, with delivStReqInd and an exprTime 2 s ahead (DELY_STORED). Once /metrics counts
#    both expiries, m5s is killed with SIGKILL and started again on the same store. ue1 then
#    gets the IMDN REPT_DELY_FAILED / EXPIRED from ue2 (m5c listen), and as1, once it registers
#    its targetUri, gets a DeliveryStatusReport POSTed to {targetUri}/deliver-report (the node
#    HTTP/2 AS of tests/interop/as_server.mjs; valid against TS 29.538): the store wrote each
#    report in the transaction of the expiry, and an AS originator gets one too;
#  - quotas (store.max_msgs_per_originator 3, store.max_per_recipient 4, so a sender's share of
#    one queue is 2): ue1's third stored message to ue3 gets DELY_FAILED / ORIGINATOR_QUOTA
#    (2.04 MSGRESP: its share of ue3's queue) while ue2 still gets through to ue3; ue1's third
#    body (to ue2) is stored, its fourth refused (its quota); as1's fourth gets 200 +
#    MessageDeliveryAck DELY_FAILED / ORIGINATOR_QUOTA; nothing of the refused ones is
#    delivered, everything accepted is, and once it is, ue1 may send again;
#  - who may report (report tickets): ue1 (m5c) and as1 send to ue2 (offline) asking for a
#    report; ue3 (raw CoAP) and as1 (deliver-report), which know the msgIds, report on them first
#    and get the answers any report gets (2.04 DELY_STORED / accepted, 200 DELY_STORED), but
#    nothing of theirs is delivered: ue1 gets one IMDN, ue2's, and as1 one deliver-report, ue2's
#    (m5c listen reports on what asked for it).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3

make_pki
start_aanf
start_m5s "store: {max_msgs_per_originator: 3, max_per_recipient: 4}"
setup_ue ue1 001010000000901 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf01
setup_ue ue2 001010000000902 c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf02
setup_ue ue3 001010000000903 e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff03
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
AS_PORT=$(pick_port)
AS_LOG=$M5_TMP/as.log
: >"$AS_LOG"
echo 204 >"$M5_TMP/as.mode"
start_push_receiver tests/interop/as_server.mjs "$AS_PORT" "$AS_LOG" "$M5_TMP/as.mode" \
  "$M5_TMP/as_server.out"
admin_curl -sf -o /dev/null -X PUT -H 'content-type: application/json' \
  -d "{\"targets\":[\"localhost:$AS_PORT\"]}" "$M5S_ADMIN/admin/v1/as-clients/as1"

metric() { # NAME: its value on /metrics
  curl -s "$M5S_ADMIN/metrics" | awk -v n="$1" '$1 == n {print $2}'
}
nb() { # METHOD PATH [curl args]: as1 -> $ST, out.json
  local method=$1 path=$2
  shift 2
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -X "$method" -o out.json -w '%{http_code}' "$@" "$NB$path")
}
token() {
  nb POST /oauth2/token -H 'content-type: application/x-www-form-urlencoded' \
    -d grant_type=client_credentials
  [[ $ST == 200 ]] || m5s_fail "token: $ST $(cat out.json)"
  TOKEN=$(json_get out.json access_token)
}
as_send() { # ID DEST [EXTRA]: deliver-as-message from as1, stoAndFwInd; 200 + ack in out.json
  printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"%s"},"msgId":"%s","payload":"aGk=","stoAndFwInd":true%s}' \
    "$2" "$1" "${3:-}" >req.json
  nb POST /msgs-msgdelivery/v1/deliver-as-message -H 'content-type: application/json' \
    -H "authorization: Bearer $TOKEN" -d @req.json
  [[ $ST == 200 ]] || m5s_fail "deliver-as-message $1: $ST $(cat out.json)"
  validate TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
}
ue_send() { # UE DEST ID [m5c send options]: the MSGRESP in send.out (exit 1 on DELY_FAILED)
  local ue=$1 to=$2 id=$3
  shift 3
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" send \
    --to "ue:$to" --msg-id "$id" --payload "hi $id" "$@" >send.out 2>&1 || true
  grep -q '"msgType":"MSGRESP"' send.out || m5s_fail "m5c send $id: no MSGRESP: $(cat send.out)"
}
token

# ---- expiry reports across kill -9 --------------------------------------------------------------
for ue in ue2 ue3; do # registered, then offline
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" register \
    >reg.out 2>&1 || m5s_fail "$ue register: $(cat reg.out)"
done
ue_send ue1 ue2 exp-ue --store-forward --report --expire 2
grep -q '"status":"DELY_STORED"' send.out || m5s_fail "exp-ue: want DELY_STORED: $(cat send.out)"
as_send exp-as ue2 ",\"delivStReqInd\":true,\"stoAndFwParams\":{\"exprTime\":\"$(date -u -d @$(($(date +%s) + 2)) +%Y-%m-%dT%H:%M:%SZ)\"}"
[[ $(json_get out.json status) == DELY_STORED ]] || m5s_fail "exp-as: $(cat out.json)"
for ((i = 0; i < 150; i++)); do
  [[ $(metric msgin5g_messages_expired_total) == 2 ]] && break
  sleep 0.1
done
[[ $(metric msgin5g_messages_expired_total) == 2 ]] || m5s_fail "the two messages did not expire"
kill -KILL "$M5S_PID" # right after the expiry's commit: the reports must be in it
wait "$M5S_PID" 2>/dev/null || true
restart_m5s

set +e
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 2 --timeout 4 >listen1.out 2>listen1.err
rc=$?
set -e
[[ $rc == 4 ]] || m5s_fail "ue1 listen --count 2: exit $rc: $(cat listen1.err)"
$PY - listen1.out <<'EOF' || m5s_fail "ue1's expiry report after kill -9: $(cat listen1.out)"
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert len(objs) == 1, objs
o = objs[0]
assert o.get("msgType") == "IMDN" and o.get("msgId") == "exp-ue", o
assert o.get("delivSt") == "REPT_DELY_FAILED" and o.get("failureCause") == "EXPIRED", o
assert o["oriAddr"]["addr"] == "ue2" and o["destAddr"]["addr"] == "ue1", o
EOF
echo "ok: a UE's expiry report survives kill -9 right after the expiry"

token # the token key is m5s's own: still valid after the restart, taken again anyway
nb POST /msgs-asregistration/v1/registrations -H 'content-type: application/json' \
  -H "authorization: Bearer $TOKEN" \
  -d "{\"asSvcId\":\"as1\",\"targetUri\":\"https://localhost:$AS_PORT/msgin5g/\"}"
[[ $ST == 201 ]] || m5s_fail "as1 registration: $ST $(cat out.json)"
for ((i = 0; i < 100; i++)); do
  grep -q 'deliver-report' "$AS_LOG" && break
  sleep 0.1
done
node -e '
const fs = require("fs");
const rs = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse)
  .filter((r) => r.path === "/msgin5g/deliver-report");
if (rs.length !== 1) throw new Error("want one deliver-report: " + JSON.stringify(rs));
fs.writeFileSync(process.argv[2], rs[0].body);
const b = JSON.parse(rs[0].body);
if (b.msgId !== "exp-as" || b.delivSt !== "REPT_DELY_FAILED" || b.failureCause !== "EXPIRED" ||
    b.oriAddr.addr !== "ue2" || b.destAddr.addr !== "as1" || b.destAddr.addrType !== "AS")
  throw new Error("report: " + rs[0].body);' "$AS_LOG" "$M5_TMP/report.json" ||
  m5s_fail "as1's expiry report: $(cat "$AS_LOG")"
validate TS29538_MSGS_MSGDelivery.yaml DeliveryStatusReport "$M5_TMP/report.json"
echo "ok: an AS's expiry report survives kill -9 and is POSTed to {targetUri}/deliver-report"

# ---- quotas per originator ----------------------------------------------------------------------
want_stored() { grep -q '"status":"DELY_STORED"' send.out || m5s_fail "$1: want DELY_STORED: $(cat send.out)"; }
want_quota() {
  grep -q '"status":"DELY_FAILED"' send.out && grep -q '"failureCause":"ORIGINATOR_QUOTA"' send.out ||
    m5s_fail "$1: want DELY_FAILED ORIGINATOR_QUOTA: $(cat send.out)"
}
ue_send ue1 ue3 q-1 --store-forward && want_stored q-1
ue_send ue1 ue3 q-2 --store-forward && want_stored q-2
ue_send ue1 ue3 q-3 --store-forward && want_quota "q-3 (ue1's share of ue3's queue)"
ue_send ue2 ue3 q-ue2 --store-forward && want_stored "q-ue2 (another sender, same queue)"
ue_send ue1 ue2 q-4 --store-forward && want_stored "q-4 (ue1's third body)"
ue_send ue1 ue2 q-5 --store-forward && want_quota "q-5 (ue1's quota of 3)"
as_ack() { # ID STATUS [CAUSE]
  [[ $(json_get out.json status) == "$2" && $(json_get out.json failureCause) == "${3:-}" ]] ||
    m5s_fail "$1: want $2 ${3:-}: $(cat out.json)"
}
as_send qa-1 ue2 && as_ack qa-1 DELY_STORED
as_send qa-2 ue3 && as_ack qa-2 DELY_STORED
as_send qa-3 ue2 && as_ack qa-3 DELY_STORED
as_send qa-4 ue2 && as_ack "qa-4 (as1's quota of 3)" DELY_FAILED ORIGINATOR_QUOTA
[[ $(metric 'msgin5g_messages_refused_total{reason="originator_quota"}') == 3 ]] ||
  m5s_fail "refused for the quota: $(metric 'msgin5g_messages_refused_total{reason="originator_quota"}'), want 3"
echo "ok: over its quota or its share of a queue a sender gets DELY_FAILED ORIGINATOR_QUOTA (2.04 / 200), others go on"

listen_ids() { # UE COUNT: the msgIds its m5c listen got, sorted, in $got
  local rc
  set +e
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$1.yaml" --server "$(m5c_uri tls)" listen \
    --count "$2" --timeout 4 >"listen-$1.out" 2>"listen-$1.err"
  rc=$?
  set -e
  [[ $rc == 4 ]] || m5s_fail "$1 listen --count $2: exit $rc: $(cat "listen-$1.err")"
  got=$($PY -c 'import json,sys
print(" ".join(sorted(json.loads(l)["msgId"] for l in open(sys.argv[1]) if l.startswith("{"))))' "listen-$1.out")
}
listen_ids ue3 6
[[ $got == "q-1 q-2 q-ue2 qa-2" ]] || m5s_fail "ue3 got: $got"
listen_ids ue2 5
[[ $got == "q-4 qa-1 qa-3" ]] || m5s_fail "ue2 got: $got"
ue_send ue1 ue3 q-3 --store-forward && want_stored "q-3 once ue1's messages are delivered"
echo "ok: refused messages were not stored; the quota frees up as messages are delivered"

# ---- who may report: the recipient a message asked ----------------------------------------------
ue_send ue1 ue2 t-ue --store-forward --report && want_stored t-ue
as_send t-as ue2 ',"delivStReqInd":true' && as_ack t-as DELY_STORED
# ue3 and as1 know both msgIds and report first: answered as any report is, and dropped
forged() { # MSGID DEST_TYPE DEST: ue3's IMDN
  printf '{"msgType":"IMDN","oriAddr":{"addrType":"UE","addr":"ue3"},"destAddr":{"addrType":"%s","addr":"%s"},"msgId":"%s","delivSt":"REPT_DELY_FAILED","failureCause":"forged by ue3"}' "$2" "$3" "$1"
}
AKID3=$(akma_derive 001010000000903 e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff03 tls13 | kv_field akid)
KAF3=$(akma_derive 001010000000903 e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff03 tls13 | kv_field kaf)
timeout 60 "$PY" "$M5_SRC/tests/interop/coap_raw.py" --tls --port "$M5S_PORT" --kaf "$KAF3" \
  --akid "$AKID3" --timeout 10 -- reg:ue3 'expect:2.01|2.04' recv:msgid=q-3 \
  "json:$(forged t-ue UE ue1)" 'expect:2.04:msgId=t-ue:status=DELY_STORED' \
  "json:$(forged t-as AS as1)" 'expect:2.04:msgId=t-as' >forged.out 2>&1 ||
  m5s_fail "ue3's reports: $(cat forged.out)"
printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"t-ue","delivSt":"REPT_DELY_FAILED","failureCause":"forged by as1"}' >forged.json
nb POST /msgs-msgdelivery/v1/deliver-report -H 'content-type: application/json' \
  -H "authorization: Bearer $TOKEN" -d @forged.json
[[ $ST == 200 && $(json_get out.json status) == DELY_STORED ]] || m5s_fail "as1's report: $ST $(cat out.json)"
# ue2 gets both and m5c reports on each (REPT_DELY_SUCCESS): those are the ones delivered
listen_ids ue2 3 # (a count it never reaches: nothing more comes)
[[ $got == "t-as t-ue" ]] || m5s_fail "ue2 got: $got"
listen_ids ue1 2
[[ $got == t-ue ]] || m5s_fail "ue1 got reports on: $got: $(cat listen-ue1.out)"
grep -q '"msgType":"IMDN","oriAddr":{"addrType":"UE","addr":"ue2"}.*"delivSt":"REPT_DELY_SUCCESS"' listen-ue1.out ||
  m5s_fail "ue1's report is not ue2's: $(cat listen-ue1.out)"
for ((i = 0; i < 100; i++)); do
  grep -q '"msgId\\":\\"t-as' "$AS_LOG" && break
  sleep 0.1
done
sleep 1 # a second report, were one forwarded, would be POSTed right after the first
node -e '
const fs = require("fs");
const rs = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse)
  .filter((r) => r.path === "/msgin5g/deliver-report" && JSON.parse(r.body).msgId === "t-as");
if (rs.length !== 1) throw new Error("want one report on t-as: " + JSON.stringify(rs));
const b = JSON.parse(rs[0].body);
if (b.oriAddr.addr !== "ue2" || b.delivSt !== "REPT_DELY_SUCCESS") throw new Error(rs[0].body);' \
  "$AS_LOG" || m5s_fail "as1's report on t-as: $(cat "$AS_LOG")"
echo "ok: a UE or AS that knows a msgId cannot report on it (2.04 / 200 as for any report); the recipient's report reaches a UE and an AS sender"
stop_m5s
