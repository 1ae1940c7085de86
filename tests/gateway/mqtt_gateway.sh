#!/usr/bin/env bash
# The MQTT gateway adapter against a real Mosquitto, both ways (docs/gateways-mqtt.md):
# devices (mosquitto_pub / mosquitto_sub, MQTT 3.1.1 and 5) publish on
# msgin5g/<id>/out/<addrType>/<addr> and the adapter hands m5gw_uplink the message (the
# driver records it); deliver() reaches the device's inbox with the MQTT 5 user properties
# oriAddr and msgId, DELIVERED only at the broker's PUBACK; a report() arrives on the inbox;
# an unknown device, an oversized payload and an inbox nobody subscribed answer precisely; the
# devices' registration is retried until the core says it is done.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/mqtt_lib.bash"

start_broker
DRV_ARGS=(--reg-fail 2) # m5s unreachable for the first two registrations: retried with back-off
start_driver
wait_for "$DRV_OUT" "^register mq1,mq2$" 15 "the adapter did not register its devices after two failures"
n=$(count_lines "$DRV_OUT" "^register mq1,mq2 \\(failing\\)$")
((n == 2)) || fail "$n failed registrations before the good one, want 2"
wait_for "$DRV_ERR" "registering devices mq1 .. mq2 with m5s failed: .*m5s unreachable \\(test\\).*; again in 2000 ms"

# ---- uplink: an MQTT 3.1.1 device, then an MQTT 5 one with msgId / appId / delivStReqInd ----
dev_pub mq1 -t msgin5g/mq1/out/UE/ue2 -m 'hello ue2' || fail "mq1's publish failed"
wait_for "$DRV_OUT" "^uplink ori=UE:mq1 dest=UE:ue2 msgId=[0-9a-f]{24} appId=- report=0 len=9 payload=$(hex 'hello ue2')$"
wait_for "$DRV_OUT" "^spooled "
dev_pub mq2 -V mqttv5 -D publish user-property msgId m2-1 -D publish user-property appId app7 \
  -D publish user-property delivStReqInd true -t msgin5g/mq2/out/AS/as1 -m 'to the AS' ||
  fail "mq2's MQTT 5 publish failed"
wait_for "$DRV_OUT" "^uplink ori=UE:mq2 dest=AS:as1 msgId=m2-1 appId=app7 report=1 len=9 payload=$(hex 'to the AS')$"
dev_pub mq1 -t msgin5g/mq1/out/GROUP/g1 -f /dev/null || fail "empty publish failed"
wait_for "$DRV_OUT" "^uplink ori=UE:mq1 dest=GROUP:g1 .* len=0 payload=$"

# ---- downlink: an MQTT 5 device (user properties) and an MQTT 3.1.1 device (bare payload) ----
dev_sub_start mq1 "$M5_TMP/mq1.in" -V mqttv5
SUB1=$SUB_PID
dev_sub_start mq2 "$M5_TMP/mq2.in"
SUB2=$SUB_PID
drv deliver mq1 dl-1 UE:ue1 hi there
wait_for "$DRV_OUT" "^dl dl-1 DELIVERED" 10 "deliver to mq1 not DELIVERED"
wait_for "$M5_TMP/mq1.in" "^msgin5g/mq1/in\|.*oriAddr:UE:ue1.*\|hi there$" 10 "mq1 did not get the message with oriAddr"
grep -q "msgId:dl-1" "$M5_TMP/mq1.in" || fail "no msgId user property: $(cat "$M5_TMP/mq1.in")"
drv deliver mq2 dl-2 AS:as1 plain bytes
wait_for "$DRV_OUT" "^dl dl-2 DELIVERED"
wait_for "$M5_TMP/mq2.in" "^msgin5g/mq2/in\|\|plain bytes$" 10 "mq2 (MQTT 3.1.1) did not get the bare payload"

# ---- a report about mq2's message m2-1, on mq2's inbox (MQTT 5 properties + JSON) ----
drv report mq2 m2-1 AS:as1 DELIVERED
wait_for "$DRV_OUT" "^report rc=0$"
wait_for "$M5_TMP/mq2.in" '"msgType":"REPORT","msgId":"m2-1","destAddr":\{"addrType":"AS","addr":"as1"\},"delivSt":"DELIVERED"' 10 "no report on mq2's inbox"
# m5s refusing mq2's message for good: the gateway's own FAILED report, with the reason
drv m5s refuse
wait_for "$DRV_OUT" "^m5s refuse$"
dev_pub mq2 -V mqttv5 -D publish user-property msgId m2-2 -D publish user-property delivStReqInd true \
  -t msgin5g/mq2/out/UE/ue9 -m 'refused'
wait_for "$M5_TMP/mq2.in" '"msgId":"m2-2","destAddr":\{"addrType":"UE","addr":"ue9"\},"delivSt":"FAILED","failureCause":"forbidden by the test"' 10 "no FAILED report after m5s refused"
drv m5s ok
wait_for "$DRV_OUT" "^m5s ok$"
drv report mq3 m9 AS:as1 DELIVERED # not ours
wait_for "$DRV_OUT" "^report rc=-4$" 10 "a report for a device the gateway does not serve was taken"

# ---- refusals: an unknown device, a payload past mqtt.max_payload, an inbox without a session ----
drv deliver mq3 dl-3 UE:ue1 x
wait_for "$DRV_OUT" "^dl dl-3 FAILED_UNKNOWN not a device of this gateway"
big=$(head -c 70000 /dev/zero | tr '\0' a)
drv deliver mq1 dl-4 UE:ue1 "$big"
wait_for "$DRV_OUT" "^dl dl-4 FAILED_CONTENT payload larger than mqtt.max_payload"
dev_sub_stop
kill -TERM "$SUB1" 2>/dev/null || true
wait "$SUB1" 2>/dev/null || true
# mq1's session is persistent: a message while it is offline is queued and DELIVERED...
drv deliver mq1 dl-5 UE:ue1 while away
wait_for "$DRV_OUT" "^dl dl-5 DELIVERED"
dev_sub_resume mq1 "$M5_TMP/mq1.in" -V mqttv5
wait_for "$M5_TMP/mq1.in" "\|while away$" 10 "mq1 did not get what was queued while it was away"
# ... while a device that never subscribed has nobody to queue for: RETRY (m5s keeps it)
timeout 10 mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -u mq2 -P "$(dev_pw mq2)" -i mq2 -t x -E -q 1 \
  >/dev/null 2>&1 || true # a clean session for mq2: its subscription ends
drv deliver mq2 dl-6 UE:ue1 nobody home
wait_for "$DRV_OUT" "^dl dl-6 RETRY no device session subscribed to its inbox yet"

kill -TERM "$SUB_PID" 2>/dev/null || true
stop_driver
wait_for "$DRV_OUT" "^stopped$"
echo "PASS"
