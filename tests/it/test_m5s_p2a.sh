#!/usr/bin/env bash
# Integration: point-to-application (docs/northbound.md): a UE sends to as:as1 (m5c over TLS);
# m5s POSTs a UEMessageDelivery to {targetUri}/deliver-message over HTTP/2 with its own
# certificate (the AS, a node HTTP/2 server, requires one from the CA), and a UE's report to
# {targetUri}/deliver-report as a DeliveryStatusReport; bodies valid against TS 29.538.
#  - live registered AS: the UE's MSG is accepted for delivery and arrives once; what was stored
#    before the AS registered is pushed when it registers;
#  - the AS answers 503: stored (stoAndFwInd) and delivered by the back-off once it answers 204;
#    the AS is down (its port closed): stored, delivered once it is back;
#  - an AS that is configured but not registered: DELY_STORED / RECIPIENT_NOT_REGISTERED;
#    an unknown AS: UNKNOWN_RECIPIENT;
#  - reports both ways: the AS's DeliveryStatusReport (POST deliver-report) on the UE's message
#    that asked for one (delivStReqInd) reaches the UE as an IMDN from as:as1; the UE's IMDN on the AS's message (delivStReqInd) reaches the AS as a
#    DeliveryStatusReport POSTed to {targetUri}/deliver-report.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
start_m5s
setup_ue ue1 001010000000701 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
AS_PORT=$(pick_port)
AS_LOG=$M5_TMP/as.log
MODE=$M5_TMP/as.mode
: >"$AS_LOG"
echo 204 >"$MODE"
start_push_receiver tests/interop/as_server.mjs "$AS_PORT" "$AS_LOG" "$MODE" "$M5_TMP/as_server.out"
AS_SERVER_PID=$PUSH_RECEIVER_PID

admin_curl -s -o /dev/null -X PUT -H 'content-type: application/json' \
  -d "{\"targets\":[\"localhost:$AS_PORT\"]}" "$M5S_ADMIN/admin/v1/as-clients/as1"
admin_curl -s -o /dev/null -X PUT -H 'content-type: application/json' \
  -d "{\"targets\":[\"localhost:$AS_PORT\"]}" "$M5S_ADMIN/admin/v1/as-clients/as2"

send() { # TO ID [m5c send options...]: the MSGRESP in send.out (m5c exits 1 on DELY_FAILED)
  local to=$1 id=$2
  shift 2
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" send \
    --to "$to" --msg-id "$id" --payload "hello $id" "$@" >send.out 2>&1 || true
  grep -q '"msgType":"MSGRESP"' send.out || m5s_fail "m5c send $id: no MSGRESP: $(cat send.out)"
}
as_got() { grep -c "\"msgId\\\\\":\\\\\"$1\\\\\"" "$AS_LOG" || true; }
wait_as() { # ID COUNT SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [[ $(as_got "$1") -ge $2 ]] && return 0
    sleep 0.1
  done
  return 1
}

# not registered yet: stored or failed; unknown AS
send as:as1 p2a-early --store-forward
grep -q '"status":"DELY_STORED"' send.out || m5s_fail "as1 not registered, sto: $(cat send.out)"
send as:as2 p2a-nosf
grep -q '"failureCause":"RECIPIENT_NOT_REGISTERED"' send.out || m5s_fail "as2 not registered: $(cat send.out)"
send as:nobody p2a-who
grep -q '"failureCause":"UNKNOWN_RECIPIENT"' send.out || m5s_fail "unknown AS: $(cat send.out)"

# as1 registers with its targetUri: the stored message follows at once (not at its next back-off
# time: the first retry, 2 s after acceptance, failed, the next is due 4 s later), then a live one
sleep 3
TOKEN=$(curl -s --http2 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" --key "$PKI/as1.key" \
  -d grant_type=client_credentials "$NB/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
st=$(curl -s --http2 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" --key "$PKI/as1.key" \
  -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -o reg.out -w '%{http_code}' \
  -d "{\"asSvcId\":\"as1\",\"targetUri\":\"https://localhost:$AS_PORT/msgin5g/\"}" \
  "$NB/msgs-asregistration/v1/registrations")
[[ $st == 201 ]] || m5s_fail "as1 registration: $st $(cat reg.out)"
wait_as p2a-early 1 2 || m5s_fail "the stored message did not reach as1 at its registration: $(cat "$AS_LOG")"
# --priority: not a member of UEMessageDelivery, must not reach the AS; --report: the AS's
# report on it below is taken (one on a message that asked for none would be dropped)
send as:as1 p2a-live --priority high --report
! grep -q '"status"' send.out || m5s_fail "live AS: want accepted for delivery: $(cat send.out)"
wait_as p2a-live 1 10 || m5s_fail "p2a-live did not reach as1: $(cat "$AS_LOG")"
echo "ok: UE -> AS, stored until registered, then live"

# what the AS saw
node -e '
const fs = require("fs");
for (const l of fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
  const r = JSON.parse(l);
  if (r.method !== "POST" || r.path !== "/msgin5g/deliver-message" || !/^application\/json/.test(r.contentType))
    throw new Error("request: " + l);
  if (!/DNS:localhost/.test(r.peer.san)) throw new Error("client certificate: " + JSON.stringify(r.peer));
  fs.writeFileSync(process.argv[2] + "/body-" + JSON.parse(r.body).msgId + ".json", r.body);
}' "$AS_LOG" "$M5_TMP"
validate_sent TS29538_MSGS_MSGDelivery.yaml UEMessageDelivery "$M5_TMP/body-p2a-live.json"
grep -q '"oriAddr":{"addrType":"UE","addr":"ue1"}' "$M5_TMP/body-p2a-live.json" &&
  grep -q '"destAddr":{"addrType":"AS","addr":"as1"}' "$M5_TMP/body-p2a-live.json" &&
  ! grep -q msgType "$M5_TMP/body-p2a-live.json" || m5s_fail "body: $(cat "$M5_TMP/body-p2a-live.json")"
[[ $(as_got p2a-early) == 1 && $(as_got p2a-live) == 1 ]] || m5s_fail "duplicates at the AS: $(cat "$AS_LOG")"
echo "ok: POST {targetUri}/deliver-message with m5s's certificate, a valid UEMessageDelivery, once"

# the AS fails (503): stored, retried with back-off, delivered once it answers again
echo 503 >"$MODE"
send as:as1 p2a-retry --store-forward --expire 600
wait_as p2a-retry 1 10 || m5s_fail "no first attempt of p2a-retry"
echo 204 >"$MODE"
wait_as p2a-retry 2 20 || m5s_fail "p2a-retry was not retried: $(cat "$AS_LOG")"
sleep 3
[[ $(as_got p2a-retry) == 2 ]] || m5s_fail "p2a-retry attempts: $(as_got p2a-retry), want 2"
echo "ok: a failing AS: stored and retried until delivered"

# the AS is down (nothing listens on its port): stored, delivered once it is back
kill "$AS_SERVER_PID"
wait "$AS_SERVER_PID" 2>/dev/null || true
send as:as1 p2a-down --store-forward
sleep 3 # at least one attempt fails on the closed port
[[ $(as_got p2a-down) == 0 ]] || m5s_fail "p2a-down reached a stopped AS?"
start_push_receiver tests/interop/as_server.mjs "$AS_PORT" "$AS_LOG" "$MODE" "$M5_TMP/as_server2.out"
wait_as p2a-down 1 20 || m5s_fail "p2a-down was lost while the AS was down: $(cat "$AS_LOG")"
echo "ok: an AS that is down: stored, delivered when it is back"
# ---- reports both ways --------------------------------------------------------------------
nb() { # METHOD PATH [curl args]: as1 -> $ST, out.json
  local method=$1 path=$2
  shift 2
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -X "$method" -o out.json -w '%{http_code}' \
    -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@" "$NB$path")
}
echo '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"p2a-live","delivSt":"REPT_DELY_SUCCESS"}' >req.json
validate TS29538_MSGS_MSGDelivery.yaml DeliveryStatusReport req.json
nb POST /msgs-msgdelivery/v1/deliver-report -d @req.json
[[ $ST == 200 ]] || m5s_fail "deliver-report: $ST $(cat out.json)"
validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
[[ $(json_get out.json status) == DELY_STORED ]] || m5s_fail "report to an offline UE: $(cat out.json)"
nb POST /msgs-msgdelivery/v1/deliver-report \
  -d '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"p2a-live","delivSt":"bad value"}'
[[ $ST == 400 ]] || m5s_fail "a bad delivSt: $ST $(cat out.json)"
grep -q '"param":"delivSt"' out.json || m5s_fail "bad delivSt not named: $(cat out.json)"
nb POST /msgs-msgdelivery/v1/deliver-as-message \
  -d '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"a2p-rep","payload":"aGk=","stoAndFwInd":true,"delivStReqInd":true}'
[[ $ST == 200 ]] || m5s_fail "A2P with a report: $ST $(cat out.json)"
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 2 --timeout 10 >rep-listen.out 2>&1 || m5s_fail "ue1 listen: $(cat rep-listen.out)"
grep -q '"msgType":"IMDN".*"oriAddr":{"addrType":"AS","addr":"as1"}.*"msgId":"p2a-live".*"delivSt":"REPT_DELY_SUCCESS"' rep-listen.out ||
  m5s_fail "the AS's report did not reach ue1: $(cat rep-listen.out)"
grep -q '"msgId":"a2p-rep"' rep-listen.out || m5s_fail "a2p-rep did not reach ue1: $(cat rep-listen.out)"
for ((i = 0; i < 100; i++)); do
  grep -q '"path":"/msgin5g/deliver-report"' "$AS_LOG" && break
  sleep 0.1
done
node -e '
const fs = require("fs");
const r = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse)
  .find((x) => x.path === "/msgin5g/deliver-report");
if (!r) throw new Error("no report reached the AS");
fs.writeFileSync(process.argv[2], r.body);' "$AS_LOG" "$M5_TMP/report.json" ||
  m5s_fail "ue1's report did not reach as1: $(cat "$AS_LOG")"
validate_sent TS29538_MSGS_MSGDelivery.yaml DeliveryStatusReport "$M5_TMP/report.json"
grep -q '"oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"AS","addr":"as1"},"msgId":"a2p-rep"' \
  "$M5_TMP/report.json" || m5s_fail "report body: $(cat "$M5_TMP/report.json")"
echo "ok: reports both ways (AS -> UE IMDN, UE -> AS DeliveryStatusReport)"

# ---- stored messages pushed once when their AS registers, however often and on whichever
# worker it does: the registration's listing and the back-off timer's both run on the timer
# worker, where they share the pushes in flight (with each worker listing on its own, a
# registration on the other worker pushed every stored message a second time while the first
# pushes were still out) --------------------------------------------------------------------
timeout 60 "$M5_BIN/m5ctl" pki issue --as-svc-id as2 --dir "$PKI" >/dev/null || fail "pki issue as2"
for i in 1 2 3 4 5 6 7 8; do
  send as:as2 "p2a-due-$i" --store-forward
  grep -q '"status":"DELY_STORED"' send.out || m5s_fail "as2 not registered, sto: $(cat send.out)"
done
echo "204 1500" >"$MODE" # each push held 1.5 s: the listings overlap the pushes in flight
TOKEN2=$(curl -s --http2 --cacert "$PKI/ca.crt" --cert "$PKI/as-as2.crt" --key "$PKI/as-as2.key" \
  -d grant_type=client_credentials "$NB/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' || true)
[[ -n $TOKEN2 ]] || m5s_fail "no token for as2"
REG_PIDS=()
for i in 1 2 3 4 5 6; do # separate connections: they land on both workers
  curl -s --http2 --cacert "$PKI/ca.crt" --cert "$PKI/as-as2.crt" --key "$PKI/as-as2.key" \
    -H "authorization: Bearer $TOKEN2" -H 'content-type: application/json' -o "reg2-$i.out" \
    -w '%{http_code}' -d "{\"asSvcId\":\"as2\",\"targetUri\":\"https://localhost:$AS_PORT/msgin5g/\"}" \
    "$NB/msgs-asregistration/v1/registrations" >"reg2-$i.st" &
  REG_PIDS+=($!)
done
for p in "${REG_PIDS[@]}"; do wait "$p" || true; done
for i in 1 2 3 4 5 6; do
  [[ $(cat "reg2-$i.st") == 201 || $(cat "reg2-$i.st") == 200 ]] ||
    m5s_fail "as2 registration $i: $(cat "reg2-$i.st") $(cat "reg2-$i.out")"
done
for i in 1 2 3 4 5 6 7 8; do
  wait_as "p2a-due-$i" 1 20 || m5s_fail "p2a-due-$i did not reach as2: $(cat "$AS_LOG")"
done
sleep 4 # two rounds of held answers: a second push of any of them would have arrived
echo 204 >"$MODE"
for i in 1 2 3 4 5 6 7 8; do
  [[ $(as_got "p2a-due-$i") == 1 ]] || m5s_fail "p2a-due-$i pushed $(as_got "p2a-due-$i") times"
done
echo "ok: stored messages pushed once to an AS that registered 6 times at once"

# every body m5s POSTed to the AS carried only the members TS 29.538 declares (the AS server
# checked each in strict mode: tests/schema/openapi.mjs)
node -e '
const fs = require("fs");
const rs = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
const bad = rs.filter((r) => r.schema !== "ok");
if (bad.length) throw new Error(bad.map((r) => r.path + " " + r.body + ": " + JSON.stringify(r.schema)).join("\n"));
console.log("ok: " + rs.length + " bodies to the AS, each a strictly valid TS 29.538 body");' "$AS_LOG" ||
  m5s_fail "m5s sent the AS a body with undeclared members or not valid"
stop_m5s
