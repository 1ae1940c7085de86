#!/usr/bin/env bash
# Integration: message gateways on m5s (MSGin5G-2 / MSGin5G-4; docs/northbound.md "Gateways").
# curl plays the gateway's core towards m5s, with a real `m5ctl pki issue --gw-id` certificate
# and tokens from m5s; tests/it/gw_receiver.mjs (node HTTP/2, client certificate required, each
# body checked strictly against TS 29.538) plays its delivery service. A real UE (m5c over TLS)
# on the other side.
#  - gateway clients: m5ctl gateway add|list|remove; tokens: a gateway gets
#    msgs-msgdelivery + msgs-gwueregistration and no AS scope, an AS no gateway scope;
#  - registration (our resource): 201 with the same body, idempotent; 403 outside the pattern
#    (all or nothing) and for another gwId; 409 for an ID bound to a subscriber or held by
#    another gateway; a binding PUT of an ID a gateway holds is 409; deregistration 204 / 404;
#  - identities: an AS certificate on the gateway APIs and a gateway certificate on the AS APIs
#    are 403; a token without the scope is 403;
#  - UE -> device and AS -> device: POST {target}/msgg-n3gdelivery/v1/deliver-message (N3gMessageDelivery; an
#    sms gateway's under msgg-l3gdelivery, L3gMessageDelivery), 204 = delivered; the device's
#    report (deliver-report) reaches the UE;
#  - device -> UE: deliver-ue-message, 200 MessageDeliveryAck, stored for an offline UE,
#    a duplicate acknowledged again and delivered once; the UE's report on it is POSTed to the
#    gateway's deliver-report; a device outside the pattern or not registered by it: 403;
#  - the gateway cannot deliver (503, then down): stored, retried, delivered once it can; 404
#    from the gateway: failed, with the failure report the UE asked for;
#  - hand-over: what was stored for a device its gateway then deregistered fails
#    (RECIPIENT_REBOUND, reported) and never reaches the ID's next holder; a removed gateway's
#    IDs go with it, and its certificate gets no token; gateways and their IDs survive a
#    restart;
#  - the gateway's identity at its target: m5s pushes to a gateway only when the server there
#    carries its SAN URI urn:msgin5g:gw:<gwId>; another gateway's certificate (same CA,
#    serverAuth, right host name) gets nothing, the message stays stored and goes out once the
#    right gateway answers there.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
start_m5s
setup_ue ue1 001010000000801 b1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
for g in gw1 gw2; do
  timeout 60 "$M5_BIN/m5ctl" pki issue --gw-id "$g" --dir "$PKI" >/dev/null ||
    fail "m5ctl pki issue --gw-id $g"
done
openssl x509 -in "$PKI/gw-gw1.crt" -noout -ext subjectAltName | grep -q 'URI:urn:msgin5g:gw:gw1' ||
  fail "gw1's certificate has no SAN URI urn:msgin5g:gw:gw1"
# The stand-in plays both gateways at one address (both targets are localhost:$GW_PORT), so its
# certificate names both (m5s checks the gwId it calls against the SAN URI).
make_cert gw12 "URI:urn:msgin5g:gw:gw1,URI:urn:msgin5g:gw:gw2,DNS:localhost" serverAuth

want() { [[ $ST == "$1" ]] || m5s_fail "want HTTP $1, got $ST: $(cat out.json)"; }
GW_PORT=$(pick_port)
GW_LOG=$M5_TMP/gw.log
MODE=$M5_TMP/gw.mode
: >"$GW_LOG"
echo 204 >"$MODE"
start_receiver() { # OUT [CERT_NAME: the stand-in's certificate, default gw12]
  start_push_receiver tests/it/gw_receiver.mjs "$GW_PORT" "$GW_LOG" "$MODE" "$1" "${2:-gw12}"
  GW_RECV_PID=$PUSH_RECEIVER_PID
}
start_receiver "$M5_TMP/gw_receiver.out"

# ---- gateway clients (m5ctl gateway) -------------------------------------------------------
ctl gateway add --gw-id gw1 --kind mqtt --target "localhost:$GW_PORT" --ue-svc-ids 'mq*' >ctl.out ||
  m5s_fail "gateway add gw1: $(cat ctl.out)"
grep -q '^gw1: created' ctl.out || fail "gateway add gw1: $(cat ctl.out)"
ctl gateway add --gw-id gw2 --kind sms --target "localhost:$GW_PORT" --ue-svc-ids '*' >ctl.out ||
  m5s_fail "gateway add gw2: $(cat ctl.out)"
rc=0
ctl gateway add --gw-id gw3 --kind fax --target "localhost:$GW_PORT" --ue-svc-ids 'x*' \
  >ctl.out 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "gateway add --kind fax: exit $rc, want 2: $(cat ctl.out)"
rc=0
ctl gateway add --gw-id gw3 --kind sms --target "localhost:$GW_PORT" --ue-svc-ids 'a*b' \
  >ctl.out 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "gateway add with a '*' inside the pattern: exit $rc, want 2"
ST=$(admin_curl -s -o out.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"kind":"sms","target":"localhost:1","ueSvcIds":"a*b"}' "$M5S_ADMIN/admin/v1/gateways/gw3")
[[ $ST == 400 ]] || fail "admin PUT with a bad pattern: $ST $(cat out.json)"
ST=$(curl -s -o out.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"kind":"sms","target":"localhost:1","ueSvcIds":"x*"}' "$M5S_ADMIN/admin/v1/gateways/gw3")
[[ $ST == 401 ]] || fail "admin PUT without the management token: $ST"
ctl gateway list >ctl.out || m5s_fail "gateway list: $(cat ctl.out)"
grep -qx "gw1 mqtt localhost:$GW_PORT mq\\* 0" ctl.out &&
  grep -qx "gw2 sms localhost:$GW_PORT \\* 0" ctl.out && [[ $(wc -l <ctl.out) == 2 ]] ||
  fail "gateway list: $(cat ctl.out)"
echo "ok: gateway clients (m5ctl gateway add / list, admin API, authenticated)"

# ---- tokens --------------------------------------------------------------------------------
source "$M5_SRC/tests/it/gw_north.bash"
TOK1=$(token gw1)
gw gw1 POST /oauth2/token -d grant_type=client_credentials
[[ $(json_get out.json scope) == "msgs-msgdelivery msgs-gwueregistration" ]] ||
  fail "a gateway's default scope: $(cat out.json)"
TOK2=$(token gw2)
TOK1_DELIVERY=$(token gw1 msgs-msgdelivery)
for s in msgs-asregistration ss-gm msgs-topicsub; do
  gw gw1 POST /oauth2/token -d grant_type=client_credentials -d "scope=$s"
  [[ $ST == 400 && $(json_get out.json error) == invalid_scope ]] ||
    fail "a gateway asking for $s: $ST $(cat out.json)"
done
gw gw1 POST /oauth2/token -d grant_type=client_credentials -d client_id=gw2
[[ $ST == 401 ]] || fail "gw1 as client_id gw2: $ST $(cat out.json)"
as1_client
nb /oauth2/token -d grant_type=client_credentials -d scope=msgs-gwueregistration
[[ $ST == 400 && $(json_get out.json error) == invalid_scope ]] ||
  fail "an AS asking for msgs-gwueregistration: $ST $(cat out.json)"
echo "ok: tokens (a gateway's scopes, no AS scope for it, no gateway scope for an AS)"

# ---- registration --------------------------------------------------------------------------
REG=/msgs-gwueregistration/v1/registrations
gwreg() { # GW TOKEN BODY
  printf '%s' "$3" >req.json
  gw "$1" POST "$REG" -H "authorization: Bearer $2" -H 'content-type: application/json' \
    --data-binary @req.json
}
gwreg gw1 "$TOK1" '{"gwId":"gw1","ueSvcIds":["mq1","mq2"]}'
[[ $ST == 201 ]] || m5s_fail "registration: $ST $(cat out.json)"
[[ $(cat out.json) == '{"gwId":"gw1","ueSvcIds":["mq1","mq2"]}' ]] || fail "201 body: $(cat out.json)"
gwreg gw1 "$TOK1" '{"gwId":"gw1","ueSvcIds":["mq2","mq1"]}'
[[ $ST == 201 ]] || fail "registration again (idempotent): $ST $(cat out.json)"
gwreg gw1 "$TOK1" '{"gwId":"gw1","ueSvcIds":["mq3","sensor7"]}'
[[ $ST == 403 ]] || fail "an ID outside the pattern: $ST $(cat out.json)"
expect_problem out.json 403 NOT_AUTHORIZED 'ueSvcIds[1]'
gwreg gw1 "$TOK1" '{"gwId":"gw2","ueSvcIds":["mq4"]}'
want 403 && expect_problem out.json 403 GW_ID_MISMATCH gwId
gwreg gw2 "$TOK2" '{"gwId":"gw2","ueSvcIds":["sms-1","ue1"]}'
[[ $ST == 409 ]] || fail "an ID bound to a subscriber: $ST $(cat out.json)"
expect_problem out.json 409 UE_SVC_ID_IN_USE 'ueSvcIds[1]'
grep -q '"detail":"ue1: ' out.json || fail "409 does not name ue1: $(cat out.json)"
gwreg gw2 "$TOK2" '{"gwId":"gw2","ueSvcIds":["mq1"]}'
[[ $ST == 409 ]] || fail "an ID held by another gateway: $ST $(cat out.json)"
gwreg gw1 "$TOK1" '{"gwId":"gw1","ueSvcIds":[]}'
[[ $ST == 400 ]] || fail "no IDs: $ST"
gwreg gw1 "$TOK1" "{\"gwId\":\"gw1\",\"ueSvcIds\":[$(seq -f '"mqx%g"' -s, 1 1001)]}"
[[ $ST == 400 ]] || fail "1001 IDs: $ST"
gwreg gw1 "$TOK1_DELIVERY" '{"gwId":"gw1","ueSvcIds":["mq3"]}'
want 403 && expect_problem out.json 403 INSUFFICIENT_SCOPE
t0=$(now_ms)
gwreg gw2 "$TOK2" "{\"gwId\":\"gw2\",\"ueSvcIds\":[$(seq -f '"sms-%g"' -s, 1 1000)]}"
[[ $ST == 201 ]] || m5s_fail "bulk registration of 1000: $ST $(head -c 300 out.json)"
echo "1000 UE Service IDs registered in one request: $(($(now_ms) - t0)) ms (curl included)"
ctl gateway list >ctl.out
grep -qx "gw1 mqtt localhost:$GW_PORT mq\\* 2" ctl.out && grep -qx "gw2 sms localhost:$GW_PORT \\* 1000" ctl.out ||
  fail "gateway list after registrations: $(cat ctl.out)"
ST=$(admin_curl -s -o out.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"supi":"001010000000802"}' "$M5S_ADMIN/admin/v1/bindings/mq1")
[[ $ST == 409 ]] || fail "binding an ID a gateway holds: $ST $(cat out.json)"
echo "ok: registration (201 idempotent, 403 pattern / gwId / scope, 409 subscriber / other gateway, bulk 1000)"

# ---- identities: an AS on the gateway APIs, a gateway on the AS APIs ------------------------
nb "$REG" -X POST -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"gwId":"as1","ueSvcIds":["mq5"]}'
want 403 && expect_problem out.json 403 NOT_A_GATEWAY
UEMSG='{"oriAddr":{"addrType":"UE","addr":"mq1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"gw-up-1","payload":"aGVsbG8gZnJvbSBtcTE=","stoAndFwInd":true,"delivStReqInd":true}'
printf '%s' "$UEMSG" >up1.json
validate TS29538_MSGS_MSGDelivery.yaml UEMessageDelivery up1.json
nb /msgs-msgdelivery/v1/deliver-ue-message -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' --data-binary @up1.json
want 403 && expect_problem out.json 403 NOT_A_GATEWAY
gw gw1 POST /msgs-asregistration/v1/registrations -H "authorization: Bearer $TOK1" \
  -H 'content-type: application/json' -d '{"asSvcId":"gw1"}'
want 403 && expect_problem out.json 403 NOT_AN_AS
gw gw1 POST /msgs-msgdelivery/v1/deliver-as-message -H "authorization: Bearer $TOK1" \
  -H 'content-type: application/json' \
  -d '{"oriAddr":{"addrType":"AS","addr":"gw1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"x","stoAndFwInd":true}'
want 403 && expect_problem out.json 403 NOT_AN_AS
# an AS's token on a gateway's certificate (and the reverse) is not bound to it
gw gw1 POST /msgs-msgdelivery/v1/deliver-ue-message -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' --data-binary @up1.json
[[ $ST == 401 ]] || fail "an AS's token with a gateway's certificate: $ST $(cat out.json)"
echo "ok: an AS certificate on the gateway APIs and a gateway certificate on the AS APIs: 403"

# ---- device -> UE: deliver-ue-message --------------------------------------------------------
up() { # TOKEN FILE (as gw1)
  gw gw1 POST /msgs-msgdelivery/v1/deliver-ue-message -H "authorization: Bearer $1" \
    -H 'content-type: application/json' --data-binary "@$2"
}
up "$TOK1" up1.json
[[ $ST == 200 ]] || m5s_fail "deliver-ue-message: $ST $(cat out.json)"
validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
[[ $(json_get out.json status) == DELY_STORED ]] || fail "to an offline UE: $(cat out.json)"
up "$TOK1" up1.json # a retransmission: the same answer, not stored twice
[[ $ST == 200 && $(json_get out.json status) == DELY_STORED ]] || fail "duplicate: $ST $(cat out.json)"
sed 's/"mq1"/"sensor7"/' up1.json >up-out.json
up "$TOK1" up-out.json
want 403 && expect_problem out.json 403 NOT_AUTHORIZED oriAddr
sed 's/"mq1"/"mq9"/' up1.json >up-unreg.json
up "$TOK1" up-unreg.json
want 403 && expect_problem out.json 403 NOT_AUTHORIZED oriAddr
sed 's/"mq1"/"sms-1"/' up1.json >up-other.json
up "$TOK1" up-other.json
[[ $ST == 403 ]] || fail "as another gateway's device: $ST $(cat out.json)"
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 1 --timeout 10 >listen1.out 2>&1 || m5s_fail "ue1 listen: $(cat listen1.out)"
grep -q '"msgType":"MSG".*"oriAddr":{"addrType":"UE","addr":"mq1"}.*"msgId":"gw-up-1"' listen1.out ||
  m5s_fail "mq1's message did not reach ue1: $(cat listen1.out)"
# ue1's automatic report (delivStReqInd) goes to gw1's deliver-report
for ((i = 0; i < 100; i++)); do
  grep -q '"path":"/msgg-n3gdelivery/v1/deliver-report"' "$GW_LOG" && break
  sleep 0.1
done
grep '"path":"/msgg-n3gdelivery/v1/deliver-report"' "$GW_LOG" | head -1 >rep-line.json ||
  m5s_fail "ue1's report did not reach gw1: $(cat "$GW_LOG")"
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  require("fs").writeFileSync(process.argv[2], r.body);' rep-line.json rep.json
validate_sent TS29538_MSGS_MSGDelivery.yaml DeliveryStatusReport rep.json
grep -q '"oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"UE","addr":"mq1"},"msgId":"gw-up-1"' rep.json ||
  fail "report body: $(cat rep.json)"
echo "ok: device -> UE (deliver-ue-message 200, stored, duplicate once, 403 outside pattern / not held), the UE's report to the gateway"

# ---- UE -> device -----------------------------------------------------------------------------
send() { # TO ID [m5c send options...]: the MSGRESP in send.out
  local to=$1 id=$2
  shift 2
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" send \
    --to "$to" --msg-id "$id" --payload "hello $id" "$@" >send.out 2>&1 || true
  grep -q '"msgType":"MSGRESP"' send.out || m5s_fail "m5c send $id: no MSGRESP: $(cat send.out)"
}
gw_got() { grep -c "\"msgId\\\\\":\\\\\"$1\\\\\"" "$GW_LOG" || true; }
wait_gw() { # ID COUNT SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [[ $(gw_got "$1") -ge $2 ]] && return 0
    sleep 0.1
  done
  return 1
}
body_of() { # MSGID OUT: the body of the first request carrying MSGID
  node -e 'const fs = require("fs");
    const r = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse)
      .find((x) => JSON.parse(x.body).msgId === process.argv[2]);
    if (!r) process.exit(1);
    fs.writeFileSync(process.argv[3], r.body); console.log(r.path);' "$GW_LOG" "$1" "$2"
}
send ue:mq1 dn-1 --report
! grep -q '"status"' send.out || fail "to a gateway's device: want accepted for delivery: $(cat send.out)"
wait_gw dn-1 1 10 || m5s_fail "dn-1 did not reach gw1: $(cat "$GW_LOG")"
[[ $(body_of dn-1 dn1.json) == /msgg-n3gdelivery/v1/deliver-message ]] || fail "dn-1 path"
validate_sent TS29538_MSGG_N3GDelivery.yaml N3gMessageDelivery dn1.json
grep -q '"oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"UE","addr":"mq1"}' dn1.json &&
  grep -q '"payload":"aGVsbG8gZG4tMQ=="' dn1.json && grep -q '"delivStReqInd":true' dn1.json ||
  fail "dn-1 body: $(cat dn1.json)"
grep '"msgId\\":\\"dn-1\\"' "$GW_LOG" | grep -q 'DNS:localhost' || fail "m5s's client certificate"
send ue:sms-7 dn-sms
wait_gw dn-sms 1 10 || m5s_fail "dn-sms did not reach gw2"
[[ $(body_of dn-sms dnsms.json) == /msgg-l3gdelivery/v1/deliver-message ]] || fail "an sms gateway's path"
validate_sent TS29538_MSGG_L3GDelivery.yaml L3gMessageDelivery dnsms.json
# the device's report (the gateway's deliver-report) reaches ue1
printf '%s' '{"oriAddr":{"addrType":"UE","addr":"mq1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"dn-1","delivSt":"REPT_DELY_SUCCESS"}' >drep.json
validate TS29538_MSGS_MSGDelivery.yaml DeliveryStatusReport drep.json
gw gw1 POST /msgs-msgdelivery/v1/deliver-report -H "authorization: Bearer $TOK1" \
  -H 'content-type: application/json' --data-binary @drep.json
[[ $ST == 200 ]] || m5s_fail "the gateway's deliver-report: $ST $(cat out.json)"
validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 1 --timeout 10 >listen2.out 2>&1 || m5s_fail "ue1 listen: $(cat listen2.out)"
grep -q '"msgType":"IMDN".*"oriAddr":{"addrType":"UE","addr":"mq1"}.*"msgId":"dn-1".*"delivSt":"REPT_DELY_SUCCESS"' listen2.out ||
  m5s_fail "the device's report did not reach ue1: $(cat listen2.out)"
# an AS's message to a device goes the same way (as1 may message every UE: its ueSvcIds is *)
nb /msgs-msgdelivery/v1/deliver-as-message -X POST -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"mq1"},"msgId":"a2d-1","payload":"aGk=","stoAndFwInd":true}'
[[ $ST == 200 ]] || m5s_fail "AS -> device: $ST $(cat out.json)"
! grep -q '"status"' out.json || fail "AS -> device: want accepted for delivery: $(cat out.json)"
wait_gw a2d-1 1 10 || m5s_fail "a2d-1 did not reach gw1"
body_of a2d-1 a2d.json >/dev/null
validate_sent TS29538_MSGG_N3GDelivery.yaml N3gMessageDelivery a2d.json
grep -q '"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"mq1"}' a2d.json ||
  fail "a2d-1 body: $(cat a2d.json)"
echo "ok: UE -> device and AS -> device (N3g / L3g deliver-message, strictly valid, 204 delivered), the device's report to the UE"

# ---- the gateway cannot deliver: stored, retried; down; 404 ------------------------------------
echo 503 >"$MODE"
send ue:mq1 dn-retry --store-forward --expire 600
wait_gw dn-retry 1 10 || m5s_fail "no first attempt of dn-retry"
echo 204 >"$MODE"
wait_gw dn-retry 2 20 || m5s_fail "dn-retry was not retried: $(cat "$GW_LOG")"
sleep 3
[[ $(gw_got dn-retry) == 2 ]] || fail "dn-retry attempts: $(gw_got dn-retry), want 2"
kill "$GW_RECV_PID"
wait "$GW_RECV_PID" 2>/dev/null || true
send ue:mq1 dn-down --store-forward
sleep 3 # at least one attempt fails on the closed port
[[ $(gw_got dn-down) == 0 ]] || fail "dn-down reached a stopped gateway?"
sleep 3 # a second failed attempt: the next back-off is 4 s or more away
start_receiver "$M5_TMP/gw_receiver2.out"
# the gateway is back and registers its devices again (idempotent): what waits for mq1 goes
# out now rather than at its next back-off time (logged, not asserted: timings are not tests)
t0=$(now_ms)
gwreg gw1 "$TOK1" '{"gwId":"gw1","ueSvcIds":["mq1","mq2"]}'
[[ $ST == 201 ]] || m5s_fail "registration after the gateway came back: $ST $(cat out.json)"
wait_gw dn-down 1 20 || m5s_fail "dn-down was lost while the gateway was down"
echo "dn-down reached the gateway $(($(now_ms) - t0)) ms after it registered again"
echo 404 >"$MODE"
send ue:mq2 dn-404 --report
wait_gw dn-404 1 10 || m5s_fail "dn-404 did not reach gw1"
echo 204 >"$MODE"
# the report may reach ue1 while its `m5c send` still waits for the MSGRESP (m5c prints it)
cp send.out listen3.out
if ! grep -q '"msgType":"IMDN".*"msgId":"dn-404"' listen3.out; then
  timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
    --count 1 --timeout 10 >listen3.out 2>&1 || m5s_fail "ue1 listen: $(cat listen3.out)"
fi
grep -q '"msgType":"IMDN".*"oriAddr":{"addrType":"UE","addr":"mq2"}.*"msgId":"dn-404".*"delivSt":"REPT_DELY_FAILED".*"failureCause":"UNKNOWN_RECIPIENT"' listen3.out ||
  m5s_fail "no failure report for dn-404: $(cat listen3.out)"
echo "ok: the gateway answers 503 or is down: stored and delivered later; 404: failed, reported"

# ---- hand-over: deregistration, removal ---------------------------------------------------------
echo 503 >"$MODE"
send ue:mq2 dn-orphan --store-forward --report --expire 600
wait_gw dn-orphan 1 10 || m5s_fail "no first attempt of dn-orphan"
gw gw1 DELETE "$REG/mq2" -H "authorization: Bearer $TOK1"
[[ $ST == 204 ]] || m5s_fail "deregistration: $ST $(cat out.json)"
gw gw1 DELETE "$REG/mq2" -H "authorization: Bearer $TOK1"
[[ $ST == 404 ]] || fail "deregistration again: $ST"
gw gw2 DELETE "$REG/mq1" -H "authorization: Bearer $TOK2"
[[ $ST == 404 ]] || fail "gw2 deregistering gw1's mq1: $ST"
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 1 --timeout 10 >listen4.out 2>&1 || m5s_fail "ue1 listen: $(cat listen4.out)"
grep -q '"msgType":"IMDN".*"oriAddr":{"addrType":"UE","addr":"mq2"}.*"msgId":"dn-orphan".*"delivSt":"REPT_DELY_FAILED".*"failureCause":"RECIPIENT_REBOUND"' listen4.out ||
  m5s_fail "dn-orphan was not failed at the deregistration: $(cat listen4.out)"
echo 204 >"$MODE"
# mq2 is now gw2's: nothing of gw1's time reaches it
gwreg gw2 "$TOK2" '{"gwId":"gw2","ueSvcIds":["mq2"]}'
[[ $ST == 201 ]] || m5s_fail "gw2 takes mq2: $ST $(cat out.json)"
sleep 5 # a back-off round
[[ $(gw_got dn-orphan) == 1 ]] || fail "dn-orphan was pushed again after the hand-over"
send ue:nobody-here dn-unknown
grep -q '"failureCause":"UNKNOWN_RECIPIENT"' send.out || fail "an unknown ID: $(cat send.out)"
ctl gateway remove --gw-id gw1 >ctl.out || m5s_fail "gateway remove: $(cat ctl.out)"
grep -q '^gw1: removed' ctl.out || fail "gateway remove: $(cat ctl.out)"
send ue:mq1 dn-gone
grep -q '"failureCause":"UNKNOWN_RECIPIENT"' send.out || fail "to a removed gateway's device: $(cat send.out)"
gw gw1 POST /oauth2/token -d grant_type=client_credentials
[[ $ST == 401 ]] || fail "a removed gateway's token: $ST"
up "$TOK1" up1.json
want 403 && expect_problem out.json 403 UNKNOWN_GATEWAY
ST=$(admin_curl -s -o out.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"supi":"001010000000802"}' "$M5S_ADMIN/admin/v1/bindings/mq1")
[[ $ST == 201 ]] || fail "binding mq1 after its gateway went: $ST $(cat out.json)"
echo "ok: hand-over (deregistration fails the stored messages, reported; removal takes the IDs)"

# every body m5s POSTed to the gateway carried only the members TS 29.538 declares
node -e '
const fs = require("fs");
const rs = fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
const bad = rs.filter((r) => r.schema !== "ok");
if (bad.length) throw new Error(bad.map((r) => r.path + " " + r.body + ": " + JSON.stringify(r.schema)).join("\n"));
console.log("ok: " + rs.length + " bodies to the gateway, each a strictly valid TS 29.538 body");' "$GW_LOG" ||
  m5s_fail "m5s sent the gateway a body not valid against its schema"
stop_m5s

# what the registry committed survives a restart: gw2 with the IDs it holds (mq2 and 1000 sms-*)
start_m5s
ctl gateway list >ctl.out || m5s_fail "gateway list after a restart: $(cat ctl.out)"
[[ $(cat ctl.out) == "gw2 sms localhost:$GW_PORT * 1001" ]] || fail "after a restart: $(cat ctl.out)"
stop_m5s

# ---- the gateway's identity at its target ------------------------------------------------------
# gw1's listener certificate (m5ctl pki issue --gw-id gw1: msgg-gw1, serverAuth, DNS:localhost,
# from the same CA) at gw2's target: valid for the CA and the host name, but not gw2. m5s sends it nothing; the
# message stays stored. Then gw2 itself answers there: the message goes out.
kill "$GW_RECV_PID"
wait "$GW_RECV_PID" 2>/dev/null || true
openssl verify -CAfile "$PKI/ca.crt" -purpose sslserver "$PKI/msgg-gw1.crt" >/dev/null ||
  fail "m5ctl pki issue --gw-id: msgg-gw1 is not a TLS server certificate"
start_receiver "$M5_TMP/gw_receiver3.out" msgg-gw1
start_m5s
NB="https://localhost:$M5S_NORTH"
send ue:mq2 dn-pin --store-forward --expire 600
! grep -q '"status"' send.out || fail "dn-pin: want accepted for delivery: $(cat send.out)"
wait_file_line "$M5S_LOG" 'MSG dn-pin to mq2: not delivered: the server at gateway gw2.s target is not gateway gw2' 20 ||
  m5s_fail "m5s did not refuse gw1's certificate at gw2's target"
grep -q 'names urn:msgin5g:gw:gw1, not urn:msgin5g:gw:gw2; request not sent' "$M5S_LOG" ||
  m5s_fail "the log does not say which identity the target presented"
[[ $(gw_got dn-pin) == 0 ]] || fail "dn-pin was delivered to gw1's certificate at gw2's target"
kill "$GW_RECV_PID"
wait "$GW_RECV_PID" 2>/dev/null || true
start_receiver "$M5_TMP/gw_receiver4.out" msgg-gw2
# gw2 registers mq2 again (idempotent): what waits for it goes out now, not at its back-off
TOK2=$(token gw2)
gwreg gw2 "$TOK2" '{"gwId":"gw2","ueSvcIds":["mq2"]}'
[[ $ST == 201 ]] || m5s_fail "gw2 registering mq2 again: $ST $(cat out.json)"
wait_gw dn-pin 1 30 || m5s_fail "dn-pin did not reach gw2 once gw2 answered at its target"
body_of dn-pin dnpin.json >/dev/null
validate_sent TS29538_MSGG_L3GDelivery.yaml L3gMessageDelivery dnpin.json
echo "ok: another gateway's certificate at a gateway's target gets nothing (kept, logged why); the gateway itself gets the message"
stop_m5s
