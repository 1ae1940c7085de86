#!/usr/bin/env bash
# Bad input at the MQTT gateway, against a real Mosquitto with the ACL of
# tools/mqtt-broker-conf.sh (docs/gateways-mqtt.md "Faults"):
#  - a device publishing under another device's ID: the broker's ACL drops it (an MQTT 5
#    device is told "not authorized"), nothing reaches the gateway; a device reading another's
#    inbox gets nothing; a wrong password is refused;
#  - a device the broker knows but the gateway does not serve (mq3): the gateway refuses it;
#  - malformed topics (lower-case or unknown addrType, missing or extra levels, a bad address):
#    refused and logged, each acknowledged so the broker does not redeliver it forever, and
#    the next good message still passes;
#  - a payload past mqtt.max_payload: refused.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/mqtt_lib.bash"

start_broker
start_driver "max_payload: 1000"

# ---- the ACL: mq1 publishing as mq2 ----
dev_pub mq1 -t msgin5g/mq2/out/UE/ue2 -m 'spoofed 311' || true
out=$(dev_pub mq1 -V mqttv5 -t msgin5g/mq2/out/UE/ue2 -m 'spoofed v5' 2>&1) && true
[[ $out == *"not authorised"* || $out == *"not authorized"* || $out == *"Not authorized"* ]] ||
  fail "the broker did not tell the MQTT 5 device it is not authorized: $out"
# mq2 reads mq1's inbox: subscribes (the broker may grant it) but must get nothing
# (its own bound -W, no `timeout` wrapper: the pid tracked is mosquitto_sub's own)
mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -u mq2 -P "$(dev_pw mq2)" -i spy -q 1 -W 60 \
  -t msgin5g/mq1/in -F '%t|%p' >"$M5_TMP/spy.out" 2>&1 &
SPY=$!
track_pid "$SPY"
dev_sub_start mq1 "$M5_TMP/mq1.in"
# a wrong password
if timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQ_PORT" -u mq1 -P wrong -q 1 \
  -t msgin5g/mq1/out/UE/ue2 -m x 2>"$M5_TMP/badpw.err"; then
  fail "a wrong password was accepted"
fi

# ---- a device of the broker that this gateway does not serve ----
dev_pub mq3 -t msgin5g/mq3/out/UE/ue2 -m 'not served' || fail "mq3's publish failed"
wait_for "$DRV_ERR" "refused a message on 'msgin5g/mq3/out/UE/ue2': not a device of this gateway"

# ---- malformed topics and payloads (each under mq1's own outbox, so the ACL lets them by) ----
dev_pub mq1 -t msgin5g/mq1/out/ue/ue2 -m 'lower case'
wait_for "$DRV_ERR" "refused a message on 'msgin5g/mq1/out/ue/ue2': addrType must be UE, AS, GROUP, BC or TOPIC"
dev_pub mq1 -t msgin5g/mq1/out/PHONE/ue2 -m 'unknown type'
wait_for "$DRV_ERR" "refused a message on 'msgin5g/mq1/out/PHONE/ue2': addrType must be"
dev_pub mq1 -t msgin5g/mq1/out/UE -m 'no address'
wait_for "$DRV_ERR" "refused a message on 'msgin5g/mq1/out/UE': expected msgin5g/<deviceId>/out/<addrType>/<addr>"
dev_pub mq1 -t msgin5g/mq1/out/UE/ue2/extra -m 'extra level'
wait_for "$DRV_ERR" "refused a message on 'msgin5g/mq1/out/UE/ue2/extra': expected"
dev_pub mq1 -t msgin5g/mq1/out/UE/ -m 'empty address'
wait_for "$DRV_ERR" "refused a message on 'msgin5g/mq1/out/UE/': bad address"
head -c 1001 /dev/zero >"$M5_TMP/big"
dev_pub mq1 -t msgin5g/mq1/out/UE/ue2 -f "$M5_TMP/big"
wait_for "$DRV_ERR" "refused a message on 'msgin5g/mq1/out/UE/ue2': payload larger than mqtt.max_payload"
dev_pub mq1 -V mqttv5 -D publish user-property msgId 'bad id!' -t msgin5g/mq1/out/UE/ue2 -m 'bad msgId'
wait_for "$DRV_ERR" "user property msgId: expected 1-64"

# ---- and the next good message passes; nothing else reached the core ----
dev_pub mq1 -t msgin5g/mq1/out/UE/ue2 -m 'good one'
wait_for "$DRV_OUT" "^uplink ori=UE:mq1 dest=UE:ue2 .* payload=$(hex 'good one')$"
n=$(count_lines "$DRV_OUT" "^uplink ")
((n == 1)) || fail "$n uplinks, want only the good one: $(grep '^uplink' "$DRV_OUT")"

# a retained message is handed on once, not again at the gateway's next subscription
dev_pub mq1 -r -t msgin5g/mq1/out/UE/ue2 -m 'retained'
wait_for "$DRV_OUT" "payload=$(hex 'retained')$"

# the refused ones were acknowledged: after a gateway restart the broker redelivers none
stop_driver
start_driver "max_payload: 1000"
dev_pub mq1 -t msgin5g/mq1/out/UE/ue2 -m 'after restart'
wait_for "$DRV_OUT" "payload=$(hex 'after restart')$"
n=$(count_lines "$DRV_OUT" "^uplink ")
((n == 3)) || fail "$n uplinks after the restart, want 3 (a refused or the retained one came back?): $(grep '^uplink' "$DRV_OUT")"

# the spool refusing a message (full): not acknowledged, so the broker redelivers it after
# the gateway's reconnection, and once the spool takes it, it passes
drv spool refuse
wait_for "$DRV_OUT" "^spool refuse$"
dev_pub mq1 -V mqttv5 -D publish user-property msgId sp-1 -t msgin5g/mq1/out/UE/ue2 -m 'refused by the spool'
wait_for "$DRV_ERR" "the spool refused it \\(spool full \\(test\\)\\); the broker keeps it"
drv spool ok
wait_for "$DRV_OUT" "^spool ok$"
wait_for "$DRV_OUT" "^spooled sp-1$" 15 "the message the spool refused was not redelivered"
n=$(count_lines "$DRV_OUT" "^uplink .* msgId=sp-1 ")
echo "the message the spool refused came $n times before it was spooled" >&2

# the spy saw nothing of mq1's inbox although a message went there
drv deliver mq1 dl-1 UE:ue1 for mq1 only
wait_for "$DRV_OUT" "^dl dl-1 DELIVERED"
wait_for "$M5_TMP/mq1.in" "\|for mq1 only$"
kill -TERM "$SPY" 2>/dev/null || true
wait "$SPY" 2>/dev/null || true
! grep -q "for mq1 only" "$M5_TMP/spy.out" || fail "mq2 read mq1's inbox: $(cat "$M5_TMP/spy.out")"

kill -TERM "$SUB_PID" 2>/dev/null || true
stop_driver
echo "PASS"
