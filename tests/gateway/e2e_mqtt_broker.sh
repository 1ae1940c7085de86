#!/usr/bin/env bash
# The broker's faults end to end, every part real (m5-aanf, m5s, m5gw of kind mqtt, Mosquitto
# by tools/mqtt-broker-conf.sh with persistence, m5c, curl + as_server.mjs;
# docs/gateways-mqtt.md "Faults"; tests/gateway/mqtt_restart.sh and mqtt_faults.sh test the
# same windows against the adapter alone):
#  - the broker's ACL: mq2 publishing under mq1's ID is told "not authorized" (MQTT 5) and
#    nothing reaches ue1; mq3, a device of the broker that this gateway does not serve, is
#    refused by the gateway; only mq1's own message reaches ue1;
#  - the broker restarted gracefully with messages in flight both ways: device messages the
#    broker acknowledged to mq1 but the gateway had not (the gateway frozen while mq1
#    published), and downlinks from as1 the gateway had published but the broker not
#    acknowledged (the broker frozen), besides downlinks the broker had acknowledged (m5s
#    told "delivered") and holds for mq1's offline persistent session: after the restart every
#    uplink reaches ue1 exactly once (m5s drops the repeats by msgId) and every downlink
#    reaches mq1, each msgId once after mq1 drops repeats (counted), with its bytes.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/e2e_mqtt_lib.bash"

e2e_mqtt_begin "mq1 mq2 mq3" 001010000000813 e1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
e2e_mqtt_gw_start "mq1, mq2"
e2e_as_start
DEV_SUB_FMT='%t|%P|%x'
dev_sub_start mq1 "$M5_TMP/mq1.in" -V mqttv5
dev_sub_stop # offline from here: its persistent session queues

# ---- the ACL and the gateway's own check ----
out=$(dev_pub mq2 -V mqttv5 -D publish user-property msgId spoof-1 -t msgin5g/mq1/out/UE/ue1 \
  -m 'spoofed by mq2' 2>&1) && true
[[ $out == *"ot authori"* ]] || fail "the broker did not refuse mq2 publishing as mq1: $out"
dev_pub mq2 -t msgin5g/mq1/out/UE/ue1 -m 'spoofed by mq2, 3.1.1' || true
dev_pub mq3 -t msgin5g/mq3/out/UE/ue1 -m 'from an unserved device' || fail "mq3's publish failed"
wait_file_line "$GW_LOG" "refused a message on 'msgin5g/mq3/out/UE/ue1': not a device of this gateway" 10 ||
  fail "the gateway did not refuse mq3: $(tail -5 "$GW_LOG")"
dev_pub mq1 -V mqttv5 -D publish user-property msgId acl-own -t msgin5g/mq1/out/UE/ue1 \
  -m 'mq1 itself' || fail "mq1's publish failed"
echo "ok: mq2 publishing as mq1: not authorized by the broker; mq3: refused by the gateway"

# as1_down ID TEXT: as1's deliver-as-message of TEXT to mq1 (stoAndFwInd; the first body is
# checked against the schema).
as1_down() {
  printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"mq1"},"msgId":"%s","payload":"%s","stoAndFwInd":true}' \
    "$1" "$(printf %s "$2" | base64)" >"$M5_TMP/down.json"
  as_deliver "$M5_TMP/down.json" "$([[ $1 == pre-1 ]] || echo novalidate)"
  [[ $ST == 200 ]] || { kill -CONT "$MQ_PID"; m5s_fail "deliver-as-message $1: $ST $(cat "$M5_TMP/as.out")"; }
}

# ---- downlinks the broker acknowledged: m5s is done with them, the broker holds them ----
P=4
for ((k = 1; k <= P; k++)); do as1_down "pre-$k" "pre $k"; done
for ((k = 1; k <= P; k++)); do
  wait_file_line "$GW_LOG" "message pre-$k delivered to mq1" 15 ||
    fail "pre-$k was not delivered to the broker: $(tail -5 "$GW_LOG")"
done

# ---- uplinks in flight: acknowledged to mq1 by the broker, not yet taken by the gateway ----
U=8
D=8
kill -STOP "$GW_PID"
for ((k = 1; k <= U; k++)); do
  dev_pub mq1 -V mqttv5 -D publish user-property msgId "up-$k" -t msgin5g/mq1/out/UE/ue1 \
    -m "up $k" || { kill -CONT "$GW_PID"; fail "mq1's publish up-$k was not acknowledged"; }
done
# ---- downlinks in flight: published by the gateway, not acknowledged by the frozen broker ----
kill -STOP "$MQ_PID"
kill -CONT "$GW_PID" # it takes the uplinks; its PUBACKs wait in the frozen broker's socket
for ((k = 1; k <= D; k++)); do as1_down "down-$k" "down $k"; done
for ((k = 1; k <= D; k++)); do
  wait_file_line "$GW_LOG" "down-$k -> mq1: published" 15 ||
    { kill -CONT "$MQ_PID"; fail "down-$k was not published: $(tail -5 "$GW_LOG")"; }
done
(($(gw_log_count "message down-[0-9]+ delivered to mq1") == 0)) ||
  fail "a downlink was answered delivered while the broker was frozen"
# the graceful stop (SIGTERM, then SIGCONT: Mosquitto saves its persistence) and a new start
kill -TERM "$MQ_PID"
kill -CONT "$MQ_PID"
wait_pid_rc "$MQ_PID" 10
((WAIT_RC != 124)) || fail "mosquitto did not stop within 10 s"
start_broker_again
echo "the broker restarted with $U uplinks and $D downlinks in flight, $P downlinks held" >&2

# ---- every uplink reaches ue1, once ----
ue_listen ue1 $((U + 1)) 30 "$M5_TMP/ue1.out" ||
  m5s_fail "ue1 did not get mq1's $((U + 1)) messages: $(cat ue1.out; tail -20 "$GW_LOG")"
got=$(ue_lines ue1.out 'r.msgType === "MSG"' '[r.oriAddr.addr, r.msgId, r.payloadText].join(" ")' | sort)
want=$( (echo "mq1 acl-own mq1 itself"; for ((k = 1; k <= U; k++)); do echo "mq1 up-$k up $k"; done) | sort)
[[ $got == "$want" ]] || fail "ue1 got:
$got
want:
$want"
for ((k = 1; k <= U; k++)); do # (m5c drops repeats too: m5s's own record of what it pushed)
  n=$(m5s_log_count "MSG up-$k delivered to ue1$")
  ((n == 1)) || m5s_fail "m5s delivered up-$k to ue1 $n times"
done
echo "ok: the $U uplinks in flight at the restart reached ue1, each once (and nothing spoofed;" \
  "m5s dropped $(m5s_log_count 'MSG up-[0-9]+ from mq1: a duplicate') repeats by msgId)"

# ---- every downlink reaches mq1 (repeats dropped by msgId) ----
dev_sub_resume mq1 "$M5_TMP/mq1.in" -V mqttv5
for id in $(seq -f 'pre-%g' 1 $P) $(seq -f 'down-%g' 1 $D); do
  wait_file_line "$M5_TMP/mq1.in" "msgId:$id\|" 40 ||
    m5s_fail "$id, accepted by m5s, never reached mq1: $(cat "$M5_TMP/mq1.in"; tail -20 "$GW_LOG")"
done
got=$(dev_inbox "$M5_TMP/mq1.in" | node -e 'const seen = new Map();
  for (const l of require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean)) {
    const m = JSON.parse(l);
    const k = m.props.oriAddr + " " + m.props.msgId;
    if (seen.has(k) && seen.get(k) !== m.payload) throw new Error("a repeat with other bytes: " + l);
    seen.set(k, m.payload);
  }
  console.log([...seen].map(([k, p]) => k + " " + p).sort().join("\n"));')
want=$( (for ((k = 1; k <= P; k++)); do echo "AS:as1 pre-$k pre $k"; done
  for ((k = 1; k <= D; k++)); do echo "AS:as1 down-$k down $k"; done) | sort)
[[ $got == "$want" ]] || fail "mq1 got (repeats dropped):
$got
want:
$want"
reps=$(($(dev_inbox "$M5_TMP/mq1.in" | wc -l) - D - P))
echo "ok: the $D downlinks in flight and the $P held at the restart reached mq1 ($reps repeats, dropped by msgId)"
echo "gateway: $(gw_log_count 'message down-[0-9]+ delivered to mq1') downlink deliveries answered 204, $(gw_log_count 'message down-[0-9]+ to mq1: later') answered 503" >&2

# nothing more for ue1 (m5s dropped the uplinks' repeats); the spool is empty
if ue_listen ue1 1 3 "$M5_TMP/ue1-more.out"; then fail "ue1 got more: $(cat "$M5_TMP/ue1-more.out")"; fi
[[ -z $(ue_lines "$M5_TMP/ue1-more.out" 'r.msgType') ]] || fail "ue1 got more: $(cat "$M5_TMP/ue1-more.out")"
wait_spool 0 10 || fail "the gateway's spool is not empty: $(cat "$M5_TMP/health.json")"
dev_sub_stop
e2e_gw_stop
stop_m5s
echo "PASS"
