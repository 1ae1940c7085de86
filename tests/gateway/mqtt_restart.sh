#!/usr/bin/env bash
# The MQTT gateway across failures (docs/gateways-mqtt.md "Acknowledgements"), against a real
# Mosquitto with persistence:
#  A. the gateway killed with -9 while device messages wait for the spool: the broker still
#     holds them (the adapter acknowledges only at SPOOLED) and hands them to the next gateway
#     process; once spooled they are acknowledged and never come again;
#  B. the broker restarted gracefully while device messages wait for the spool: redelivered
#     to the gateway, which does not pass them on twice, and acknowledged once spooled;
#  C. the broker stopped gracefully while downlinks are in flight (published, no PUBACK yet:
#     the broker is frozen with SIGSTOP first) and started again: each deliver() ends
#     DELIVERED or RETRY; what was DELIVERED reaches the offline device after the restart,
#     what was RETRY is delivered again (as m5s would): the device gets every message, repeats
#     only as QoS 1 allows (counted, dropped by msgId);
#  D. while the broker is down: deliver() answers RETRY, report() EAGAIN, and the gateway
#     reconnects by itself (back-off) when the broker is back.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/mqtt_lib.bash"

start_broker
start_driver
subscribed() { count_lines "$DRV_ERR" "subscribed to msgin5g"; }
# wait_resubscribed N: the gateway's N-th subscription (after a reconnection).
wait_resubscribed() {
  local i
  for ((i = 0; i < 150; i++)); do
    (($(subscribed) >= $1)) && return 0
    sleep 0.1
  done
  fail "the gateway did not reconnect and subscribe (#$1): $(tail -5 "$DRV_ERR")"
}
v5pub() { dev_pub mq1 -V mqttv5 -D publish user-property msgId "$1" -t msgin5g/mq1/out/UE/ue2 -m "$2"; }

# ---- A: kill -9 with messages not yet spooled ----
drv spool hold
wait_for "$DRV_OUT" "^spool hold$"
for k in 1 2 3; do v5pub "u-$k" "up $k" || fail "publish u-$k failed"; done
for k in 1 2 3; do wait_for "$DRV_OUT" "^uplink .* msgId=u-$k "; done
kill -KILL "$DRV_PID"
wait "$DRV_PID" 2>/dev/null || true
exec {DRV_FD}>&-
start_driver # its spool takes everything
for k in 1 2 3; do
  wait_for "$DRV_OUT" "^spooled u-$k$" 10 "u-$k, held when the gateway was killed, did not come back"
done
stop_driver
start_driver
v5pub marker-a "marker"
wait_for "$DRV_OUT" "^spooled marker-a$"
for k in 1 2 3; do
  n=$(count_lines "$DRV_OUT" "^uplink .* msgId=u-$k ")
  ((n == 2)) || fail "u-$k handed to the core $n times over two gateway runs, want 2 (killed, then spooled)"
done

# ---- B: graceful broker restart with messages waiting for the spool ----
drv spool hold
wait_for "$DRV_OUT" "^spool hold$"
v5pub u-4 "up 4"
v5pub u-5 "up 5"
wait_for "$DRV_OUT" "msgId=u-5 "
s=$(subscribed)
restart_broker
wait_resubscribed $((s + 1))
drv spool release
wait_for "$DRV_OUT" "^spooled u-5$"
s=$(subscribed)
restart_broker # the PUBACKs were sent: nothing may come back
wait_resubscribed $((s + 1))
v5pub marker-b "marker"
wait_for "$DRV_OUT" "^spooled marker-b$"
for k in 4 5; do
  n=$(count_lines "$DRV_OUT" "^uplink .* msgId=u-$k ")
  ((n == 1)) || fail "u-$k handed to the core $n times across two broker restarts, want 1"
done

# ---- C: graceful broker restart with downlinks in flight ----
dev_sub_start mq1 "$M5_TMP/mq1.in" -V mqttv5
dev_sub_stop # offline now; its persistent session queues
N=20
# the broker frozen (SIGSTOP): the publishes leave the gateway, no PUBACK comes back; then it is
# stopped gracefully (SIGTERM, then SIGCONT) with all of them in flight
kill -STOP "$MQ_PID"
for ((k = 1; k <= N; k++)); do drv deliver mq1 "d-$k" UE:ue1 "down $k"; done
wait_for "$DRV_ERR" "d-$N -> mq1: published" 10 "the downlinks were not published"
(($(count_lines "$DRV_OUT" "^dl d-[0-9]+ ") == 0)) || fail "a downlink ended while the broker was frozen"
s=$(subscribed)
kill -TERM "$MQ_PID"
kill -CONT "$MQ_PID"
wait_pid_rc "$MQ_PID" 10
((WAIT_RC != 124)) || fail "mosquitto did not stop within 10 s"
start_broker_again
for ((k = 1; k <= N; k++)); do wait_for "$DRV_OUT" "^dl d-$k (DELIVERED|RETRY)" 15; done
wait_resubscribed $((s + 1))
delivered_first=$(count_lines "$DRV_OUT" "^dl d-[0-9]+ DELIVERED")
echo "broker restart: $delivered_first of $N downlinks were DELIVERED before it, the rest RETRY" >&2
for round in 1 2 3 4 5; do
  again=0
  for ((k = 1; k <= N; k++)); do
    grep -q "^dl d-$k DELIVERED" "$DRV_OUT" && continue
    last=$(grep "^dl d-$k " "$DRV_OUT" | tail -n 1)
    [[ $last == *RETRY* ]] || continue
    drv deliver mq1 "d-$k" UE:ue1 "down $k" # what m5s does with a 503
    again=$((again + 1))
  done
  ((again)) || break
  sleep 0.5
done
for ((k = 1; k <= N; k++)); do
  wait_for "$DRV_OUT" "^dl d-$k DELIVERED" 10 "d-$k never DELIVERED"
done
dev_sub_resume mq1 "$M5_TMP/mq1.in" -V mqttv5
for ((k = 1; k <= N; k++)); do
  wait_for "$M5_TMP/mq1.in" "msgId:d-$k\|down $k$" 15 "d-$k, acknowledged to m5s, never reached the device"
done
dups=$(grep -o "msgId:d-[0-9]*|" "$M5_TMP/mq1.in" | sort | uniq -d | wc -l)
echo "device: $N distinct messages, $dups of them more than once (QoS 1 repeats, dropped by msgId)" >&2
dev_sub_stop

# ---- D: the broker down ----
stop_broker
wait_for "$DRV_ERR" "next attempt in" 10
drv deliver mq1 d-down UE:ue1 nobody
wait_for "$DRV_OUT" "^dl d-down RETRY the broker is not connected"
drv report mq1 u-1 UE:ue2 DELIVERED
wait_for "$DRV_OUT" "^report rc=-6$" 10 "report() while the broker is down: want M5_EAGAIN"
s=$(subscribed)
start_broker_again
wait_resubscribed $((s + 1))
drv deliver mq1 d-back UE:ue1 back
wait_for "$DRV_OUT" "^dl d-back DELIVERED"

stop_driver
echo "PASS"
