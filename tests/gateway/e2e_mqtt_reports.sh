#!/usr/bin/env bash
# Delivery status reports between MQTT devices and UEs / ASs, every part real (m5-aanf, m5s,
# m5gw of kind mqtt, Mosquitto by tools/mqtt-broker-conf.sh, m5c, curl + as_server.mjs;
# docs/gateways-mqtt.md "Reports"):
#  - ue1 -> mq1 with a report asked for (m5c send --report): once the broker accepted the
#    gateway's QoS 1 publish to mq1's inbox, ue1 gets an IMDN from UE:mq1 on that msgId,
#    REPT_DELY_SUCCESS (the gateway sends the device's report up through its spool);
#  - as1 -> mq1 with delivStReqInd: as1 gets a strictly valid DeliveryStatusReport from UE:mq1;
#  - mq1 (MQTT 5, user property delivStReqInd=true) -> ue1: ue1's IMDN comes back to
#    msgin5g/mq1/in as the REPORT (user properties msgType, msgId, oriAddr, delivSt and the
#    JSON payload);
#  - mq1 -> as1 asking for a report, as1's deliver-report: the REPORT from AS:as1 on mq1's inbox;
#  - mq1 -> an unknown UE asking for a report (m5s answers DELY_FAILED UNKNOWN_RECIPIENT): the
#    gateway's FAILED report with that failureCause on mq1's inbox.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/e2e_mqtt_lib.bash"

e2e_mqtt_begin "mq1" 001010000000812 d1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
e2e_mqtt_gw_start "mq1"
e2e_as_start
DEV_SUB_FMT='%t|%P|%x'
dev_sub_start mq1 "$M5_TMP/mq1.in" -V mqttv5

# ---- a UE's and an AS's message to the device, a report asked for ----
ue_send ue1 ue:mq1 rep-u1 'report this' --report || m5s_fail "m5c send: $(cat send-rep-u1.out)"
printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"mq1"},"msgId":"rep-a1","payload":"%s","stoAndFwInd":true,"delivStReqInd":true}' \
  "$(printf 'as report' | base64)" >"$M5_TMP/a1.json"
as_deliver "$M5_TMP/a1.json"
[[ $ST == 200 ]] || m5s_fail "deliver-as-message to mq1: $ST $(cat "$M5_TMP/as.out")"
wait_file_line "$M5_TMP/mq1.in" "msgId:rep-a1" 20 || fail "mq1 did not get both: $(cat "$M5_TMP/mq1.in")"
[[ $(dev_inbox "$M5_TMP/mq1.in" 'm.props.msgId === "rep-u1" && m.props.oriAddr === "UE:ue1" && m.payload === "report this"' | wc -l) == 1 ]] ||
  fail "mq1's inbox: $(cat "$M5_TMP/mq1.in")"

# (the report may reach ue1 in m5c send's own session already: m5c prints what is pushed)
if grep -q '"msgType":"IMDN"' send-rep-u1.out; then cp send-rep-u1.out ue1-rep.out; else
  ue_listen ue1 1 20 "$M5_TMP/ue1-rep.out" ||
    m5s_fail "ue1 got no report: $(cat ue1-rep.out; tail -10 "$GW_LOG")"
fi
got=$(ue_lines ue1-rep.out 'r.msgType === "IMDN"' \
  '[r.oriAddr.addrType, r.oriAddr.addr, r.destAddr.addrType, r.destAddr.addr, r.msgId, r.delivSt].join(" ")')
[[ $got == "UE mq1 UE ue1 rep-u1 REPT_DELY_SUCCESS" ]] ||
  fail "ue1's report: '$got', want 'UE mq1 UE ue1 rep-u1 REPT_DELY_SUCCESS': $(cat ue1-rep.out)"
echo "ok: ue1 -> mq1 with --report: the IMDN from UE:mq1, REPT_DELY_SUCCESS"
wait_as_body deliver-report 'b.msgId === "rep-a1"' 20 ||
  m5s_fail "as1 got no report: $(cat "$AS_LOG"; tail -10 "$GW_LOG")"
got=$(as_bodies deliver-report 'b.msgId === "rep-a1"' \
  '[b.oriAddr.addrType, b.oriAddr.addr, b.destAddr.addrType, b.destAddr.addr, b.delivSt].join(" ")')
[[ $got == "UE mq1 AS as1 REPT_DELY_SUCCESS" ]] || fail "as1's report: '$got'"
echo "ok: as1 -> mq1 with delivStReqInd: a strictly valid DeliveryStatusReport from UE:mq1"

# ---- the device's message to ue1, a report asked for: ue1's IMDN on mq1's inbox ----
: >"$M5_TMP/mq1.in"
dev_pub mq1 -V mqttv5 -D publish user-property msgId rep-d1 -D publish user-property \
  delivStReqInd true -t msgin5g/mq1/out/UE/ue1 -m 'tell me' || fail "mq1's publish failed"
ue_listen ue1 1 20 "$M5_TMP/ue1-msg.out" || m5s_fail "ue1 got nothing: $(cat ue1-msg.out)"
[[ $(ue_lines ue1-msg.out 'r.msgType === "MSG" && r.msgId === "rep-d1" && r.oriAddr.addr === "mq1" &&
  r.delivStReqInd === true && r.payloadText === "tell me"' | wc -l) == 1 ]] ||
  fail "ue1 did not get rep-d1 with delivStReqInd: $(cat ue1-msg.out)"
wait_file_line "$M5_TMP/mq1.in" "msgType:REPORT" 20 ||
  m5s_fail "no report on mq1's inbox: $(cat "$M5_TMP/mq1.in"; tail -10 "$GW_LOG")"
# expect_report MSGID FROM [DELIVST [CAUSE]]: exactly one REPORT on MSGID from FROM
# (type:addr), delivSt DELIVST (default DELIVERED), failureCause CAUSE if given, with its user
# properties and a JSON payload saying the same.
expect_report() {
  local id=$1 from=$2 st=${3:-DELIVERED} cause=${4:-} n
  n=$(dev_inbox "$M5_TMP/mq1.in" "m.topic === 'msgin5g/mq1/in' && (() => {
    const p = {msgType: 'REPORT', msgId: '$id', oriAddr: '$from', delivSt: '$st'};
    const j = {msgType: 'REPORT', msgId: '$id',
               destAddr: {addrType: '${from%%:*}', addr: '${from#*:}'}, delivSt: '$st'};
    if ('$cause') p.failureCause = j.failureCause = '$cause';
    return JSON.stringify(m.props) === JSON.stringify(p) &&
      JSON.stringify(JSON.parse(m.payload)) === JSON.stringify(j); })()" | wc -l)
  ((n == 1)) || fail "want one REPORT on $id from $from ($st $cause) on mq1's inbox: $(cat "$M5_TMP/mq1.in")"
}
expect_report rep-d1 UE:ue1
echo "ok: mq1 -> ue1 with delivStReqInd=true: ue1's report on msgin5g/mq1/in (properties + JSON)"

# ---- the device's message to as1, a report asked for; as1 reports ----
dev_pub mq1 -V mqttv5 -D publish user-property msgId rep-d2 -D publish user-property \
  delivStReqInd true -t msgin5g/mq1/out/AS/as1 -m 'tell me, AS' || fail "mq1's publish failed"
wait_as_body deliver-message 'b.msgId === "rep-d2" && b.delivStReqInd === true' 20 ||
  m5s_fail "as1 did not get rep-d2: $(cat "$AS_LOG")"
echo '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"mq1"},"msgId":"rep-d2","delivSt":"REPT_DELY_SUCCESS"}' >"$M5_TMP/r2.json"
validate TS29538_MSGS_MSGDelivery.yaml DeliveryStatusReport "$M5_TMP/r2.json"
as_nb /msgs-msgdelivery/v1/deliver-report -H "authorization: Bearer $AS_TOKEN" \
  -H 'content-type: application/json' --data-binary "@$M5_TMP/r2.json"
[[ $ST == 20? ]] || m5s_fail "as1's deliver-report: $ST $(cat "$M5_TMP/as.out")"
wait_file_line "$M5_TMP/mq1.in" "msgId:rep-d2" 20 ||
  m5s_fail "as1's report did not reach mq1: $(cat "$M5_TMP/mq1.in"; tail -10 "$GW_LOG")"
expect_report rep-d2 AS:as1
echo "ok: mq1 -> as1 with delivStReqInd=true: as1's report on msgin5g/mq1/in"

# ---- the device's message to an unknown UE, a report asked for: FAILED on mq1's inbox ----
dev_pub mq1 -V mqttv5 -D publish user-property msgId rep-d3 -D publish user-property \
  delivStReqInd true -t msgin5g/mq1/out/UE/nobody -m 'to nobody' || fail "mq1's publish failed"
wait_file_line "$M5_TMP/mq1.in" "msgId:rep-d3" 20 ||
  m5s_fail "no report on rep-d3 (to an unknown UE): $(cat "$M5_TMP/mq1.in"; tail -10 "$GW_LOG")"
expect_report rep-d3 UE:nobody FAILED UNKNOWN_RECIPIENT
echo "ok: mq1 -> an unknown UE with delivStReqInd=true: the FAILED report (UNKNOWN_RECIPIENT)"

[[ $(dev_inbox "$M5_TMP/mq1.in" | wc -l) == 3 ]] || fail "mq1 got more than the three reports: $(cat "$M5_TMP/mq1.in")"
wait_spool 0 10 || fail "the gateway's spool is not empty: $(cat "$M5_TMP/health.json")"
kill -TERM "$SUB_PID" 2>/dev/null || true
e2e_gw_stop
stop_m5s
echo "PASS"
