#!/usr/bin/env bash
# MQTT devices end to end, every part real (docs/gateways-mqtt.md): m5-aanf, m5s, m5gw of kind
# mqtt (src/gateway/core + src/gateway/mqtt), Mosquitto configured by
# tools/mqtt-broker-conf.sh, the UE ue1 played by m5c, the devices by mosquitto_pub /
# mosquitto_sub (mq1 speaks MQTT 5, mq2 MQTT 3.1.1), the Application Server as1 by curl on the
# northbound API with tests/interop/as_server.mjs as its receiver. Each assertion is on exact
# content (payload bytes, user properties, addresses, msgIds):
#  - UE -> MQTT 5 device: the bytes on msgin5g/mq1/in with user properties oriAddr=UE:ue1 and
#    the UE's msgId, nothing else;
#  - MQTT 5 device -> UE: msgin5g/mq1/out/UE/ue1 with the device's msgId and appId reaches ue1
#    as a MSG from UE:mq1 with that msgId, appId and those bytes;
#  - the same both ways for an MQTT 3.1.1 device (bare payload; a msgId drawn by the gateway);
#  - AS -> device (deliver-as-message, binary payload, appId): the bytes, oriAddr=AS:as1,
#    msgId and appId; device -> AS (msgin5g/mq1/out/AS/as1, binary payload): as1 gets a strictly
#    valid UEMessageDelivery from UE:mq1 with those bytes, once;
#  - a device that never subscribed (no session at the broker): the gateway answers "later",
#    m5s keeps the message and delivers it after the device's first subscription;
#  - devices as members of a group (m5ctl group add): ue1's message to the group reaches each
#    device once, through the gateway, and not ue1.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/e2e_mqtt_lib.bash"

e2e_mqtt_begin "mq1 mq2 mq3" 001010000000811 c1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
e2e_mqtt_gw_start "mq1, mq2, mq3"
DEV_SUB_FMT='%t|%P|%x'
dev_sub_start mq1 "$M5_TMP/mq1.in" -V mqttv5
MQ1_SUB=$SUB_PID
dev_sub_start mq2 "$M5_TMP/mq2.in"
MQ2_SUB=$SUB_PID

# expect_inbox DEV FILE JSON: the device's inbox holds exactly one message, and it is JSON
# (topic, props, hex: as dev_inbox prints them).
expect_inbox() {
  local got
  got=$(dev_inbox "$2" | node -e 'const ls = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
    const want = JSON.parse(process.argv[1]);
    if (ls.length !== 1) { console.log(ls.length + " messages: " + ls.join(" ")); process.exit(0); }
    const m = JSON.parse(ls[0]); delete m.payload;
    const norm = (o) => JSON.stringify(o, Object.keys(o).sort());
    if (m.topic !== want.topic || m.hex !== want.hex || norm(m.props) !== norm(want.props))
      console.log("got " + JSON.stringify(m) + ", want " + JSON.stringify(want));' "$3")
  [[ -z $got ]] || fail "$1's inbox: $got"
}

# ---- UE -> MQTT 5 device, UE -> MQTT 3.1.1 device ----
TEXT1='hello mq1: ünïcödé | 42'
ue_send ue1 ue:mq1 e2e-a1 "$TEXT1" || m5s_fail "m5c send: $(cat send-e2e-a1.out)"
if ! grep -q '"msgType":"MSGRESP"' send-e2e-a1.out || grep -q '"status"' send-e2e-a1.out; then
  m5s_fail "ue1 -> mq1 not accepted for delivery: $(cat send-e2e-a1.out)"
fi
wait_file_line "$M5_TMP/mq1.in" '^msgin5g/mq1/in\|' 20 || fail "mq1 got nothing: $(tail -10 "$GW_LOG")"
expect_inbox mq1 "$M5_TMP/mq1.in" \
  "{\"topic\":\"msgin5g/mq1/in\",\"props\":{\"oriAddr\":\"UE:ue1\",\"msgId\":\"e2e-a1\"},\"hex\":\"$(hex "$TEXT1")\"}"
echo "ok: ue1 -> mq1 (MQTT 5): the bytes, oriAddr=UE:ue1, msgId=e2e-a1"

ue_send ue1 ue:mq2 e2e-a3 'hello mq2' || m5s_fail "m5c send: $(cat send-e2e-a3.out)"
wait_file_line "$M5_TMP/mq2.in" '^msgin5g/mq2/in\|' 20 || fail "mq2 got nothing: $(tail -10 "$GW_LOG")"
expect_inbox mq2 "$M5_TMP/mq2.in" "{\"topic\":\"msgin5g/mq2/in\",\"props\":{},\"hex\":\"$(hex 'hello mq2')\"}"
echo "ok: ue1 -> mq2 (MQTT 3.1.1): the bare bytes"

# ---- MQTT 5 device -> UE, MQTT 3.1.1 device -> UE (stored by m5s until ue1 listens; m5c's
# sends above would have taken them otherwise) ----
dev_pub mq1 -V mqttv5 -D publish user-property msgId e2e-a2 -D publish user-property appId \
  meter.v1 -t msgin5g/mq1/out/UE/ue1 -m 'from mq1 to ue1' || fail "mq1's publish failed"
dev_pub mq2 -t msgin5g/mq2/out/UE/ue1 -m 'from mq2 to ue1' || fail "mq2's publish failed"

ue_listen ue1 2 20 "$M5_TMP/ue1.out" || m5s_fail "ue1 did not get both: $(cat ue1.out; tail -10 "$GW_LOG")"
[[ $(ue_lines ue1.out 'r.msgType === "MSG" && r.oriAddr.addrType === "UE" && r.oriAddr.addr === "mq1" &&
  r.destAddr.addrType === "UE" && r.destAddr.addr === "ue1" && r.msgId === "e2e-a2" &&
  r.appId === "meter.v1" && r.payloadText === "from mq1 to ue1"' | wc -l) == 1 ]] || fail "ue1 did not get mq1's message: $(cat ue1.out)"
id2=$(ue_lines ue1.out 'r.msgType === "MSG" && r.oriAddr.addr === "mq2" && r.destAddr.addr === "ue1" &&
  r.payloadText === "from mq2 to ue1"' r.msgId)
[[ $id2 =~ ^[0-9a-f]{24}$ ]] || fail "ue1 did not get mq2's message (with the gateway's msgId): $(cat ue1.out)"
echo "ok: mq1 (MQTT 5, msgId e2e-a2, appId) -> ue1 and mq2 (MQTT 3.1.1, msgId $id2 drawn by the gateway) -> ue1"

# ---- AS -> device, device -> AS (binary payloads) ----
e2e_as_start
BIN_HEX=00ff7c0a0d41e282ac80
BIN_B64=$(xxd -r -p <<<"$BIN_HEX" | base64 -w0)
printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"mq1"},"msgId":"e2e-b1","appId":"meter.v2","payload":"%s","stoAndFwInd":true}' \
  "$BIN_B64" >"$M5_TMP/b1.json"
: >"$M5_TMP/mq1.in"
as_deliver "$M5_TMP/b1.json"
[[ $ST == 200 ]] || m5s_fail "deliver-as-message to mq1: $ST $(cat "$M5_TMP/as.out")"
validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck "$M5_TMP/as.out"
[[ -z $(json_get "$M5_TMP/as.out" status) ]] || m5s_fail "as1 -> mq1: $(cat "$M5_TMP/as.out")"
wait_file_line "$M5_TMP/mq1.in" '^msgin5g/mq1/in\|' 20 || fail "mq1 got nothing from as1: $(tail -10 "$GW_LOG")"
expect_inbox mq1 "$M5_TMP/mq1.in" \
  "{\"topic\":\"msgin5g/mq1/in\",\"props\":{\"oriAddr\":\"AS:as1\",\"msgId\":\"e2e-b1\",\"appId\":\"meter.v2\"},\"hex\":\"$BIN_HEX\"}"
echo "ok: as1 -> mq1 (deliver-as-message): the bytes, oriAddr=AS:as1, msgId, appId"

xxd -r -p <<<"$BIN_HEX" >"$M5_TMP/bin"
dev_pub mq1 -V mqttv5 -D publish user-property msgId e2e-b2 -t msgin5g/mq1/out/AS/as1 \
  -f "$M5_TMP/bin" || fail "mq1's publish to as1 failed"
wait_as_body deliver-message 'b.msgId === "e2e-b2"' 20 ||
  m5s_fail "as1 did not get mq1's message: $(cat "$AS_LOG"; tail -10 "$GW_LOG")"
got=$(as_bodies deliver-message 'b.msgId === "e2e-b2"' \
  '[b.oriAddr.addrType, b.oriAddr.addr, b.destAddr.addrType, b.destAddr.addr, b.payload].join(" ")')
[[ $got == "UE mq1 AS as1 $BIN_B64" ]] || fail "as1 got: $got, want UE mq1 AS as1 $BIN_B64"
echo "ok: mq1 -> as1: a strictly valid UEMessageDelivery from UE:mq1 with the bytes, once"

# ---- a device that has not subscribed yet: the broker has no session for its inbox ("no
# matching subscribers"), so the gateway answers "later" and m5s keeps the message until it
# can be delivered: after mq3's first subscription ----
ue_send ue1 ue:mq3 e2e-c1 'kept for mq3' --store-forward || m5s_fail "m5c send: $(cat send-e2e-c1.out)"
wait_file_line "$GW_LOG" "message e2e-c1 to mq3: later \\(no device session subscribed" 20 ||
  fail "the gateway did not answer 'later' for mq3: $(tail -5 "$GW_LOG")"
dev_sub_start mq3 "$M5_TMP/mq3.in" -V mqttv5
MQ3_SUB=$SUB_PID
wait_file_line "$M5_TMP/mq3.in" '^msgin5g/mq3/in\|' 40 ||
  m5s_fail "m5s did not deliver e2e-c1 once mq3 subscribed: $(tail -10 "$GW_LOG")"
expect_inbox mq3 "$M5_TMP/mq3.in" \
  "{\"topic\":\"msgin5g/mq3/in\",\"props\":{\"oriAddr\":\"UE:ue1\",\"msgId\":\"e2e-c1\"},\"hex\":\"$(hex 'kept for mq3')\"}"
echo "ok: a device without a session yet: m5s kept the message and delivered it after its subscription"

# ---- devices behind the gateway as group members: a member's message to the group reaches
# each other member once (the fan-out's stored deliveries, pushed to the gateway that holds
# each device's ID) ----
gctl() { ctl "$@" >/dev/null || fail "m5ctl $*"; }
gctl group create fleet
for m in ue:ue1 ue:mq1 ue:mq2; do gctl group add fleet "$m"; done
: >"$M5_TMP/mq1.in"
: >"$M5_TMP/mq2.in"
ue_send ue1 group:fleet e2e-g1 'to the fleet' --store-forward || m5s_fail "m5c send: $(cat send-e2e-g1.out)"
grep -q '"msgType":"MSGRESP"' send-e2e-g1.out || m5s_fail "ue1 -> group:fleet: $(cat send-e2e-g1.out)"
! grep -q '"status":"DELY_FAILED"' send-e2e-g1.out || m5s_fail "ue1 -> group:fleet: $(cat send-e2e-g1.out)"
wait_file_line "$M5_TMP/mq1.in" '^msgin5g/mq1/in\|' 30 || m5s_fail "mq1 got nothing from the group: $(tail -10 "$GW_LOG")"
wait_file_line "$M5_TMP/mq2.in" '^msgin5g/mq2/in\|' 30 || m5s_fail "mq2 got nothing from the group: $(tail -10 "$GW_LOG")"
expect_inbox mq1 "$M5_TMP/mq1.in" \
  "{\"topic\":\"msgin5g/mq1/in\",\"props\":{\"oriAddr\":\"UE:ue1\",\"msgId\":\"e2e-g1\"},\"hex\":\"$(hex 'to the fleet')\"}"
expect_inbox mq2 "$M5_TMP/mq2.in" "{\"topic\":\"msgin5g/mq2/in\",\"props\":{},\"hex\":\"$(hex 'to the fleet')\"}"
echo "ok: ue1 -> group:fleet reached the devices mq1 and mq2 once each, through the gateway"

# nothing more reached anyone; the spool is empty; every part stops cleanly
wait_spool 0 10 || fail "the gateway's spool is not empty: $(cat "$M5_TMP/health.json")"
[[ $(dev_inbox "$M5_TMP/mq2.in" | wc -l) == 1 ]] || fail "mq2 got more: $(cat "$M5_TMP/mq2.in")"
[[ $(gw_health_get downlink.delivered) == 6 && $(gw_health_get uplink.accepted) == 3 ]] ||
  fail "the gateway's counters: $(cat "$M5_TMP/health.json")"
kill -TERM "$MQ1_SUB" "$MQ2_SUB" "$MQ3_SUB" 2>/dev/null || true
e2e_gw_stop
stop_m5s
echo "PASS"
