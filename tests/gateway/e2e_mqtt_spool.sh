#!/usr/bin/env bash
# The gateway's spool end to end, every part real (m5-aanf, m5s, m5gw of kind mqtt, Mosquitto
# by tools/mqtt-broker-conf.sh, m5c; docs/gateways.md "The spool", docs/gateways-mqtt.md
# "QoS and where each side is acknowledged"):
#  - m5s unreachable from the gateway (stopped): what the devices publish is spooled and held,
#    up to spool.max_msgs (here 6); past it the gateway does not acknowledge, so the broker
#    keeps the rest (acknowledged to the device by the broker, not lost); the gateway retries
#    m5s with its back-off, the spool never above its bound;
#  - the gateway killed with -9 while those messages wait in its spool, started again (m5s
#    still away): it loads them and keeps retrying;
#  - m5s back: every message, the spooled ones and those the broker kept, reaches ue1
#    exactly once (an MQTT 5 device's msgIds and an MQTT 3.1.1 device's), the spool empties;
#  - m5s not answering (SIGSTOP): the gateway's requests time out (uplink.timeout_ms) and are
#    sent again once m5s answers; each message reaches ue1 once.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/e2e_mqtt_lib.bash"

e2e_mqtt_begin "mq1 mq2" 001010000000814 f1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
MAX=6
e2e_mqtt_gw_start "mq1, mq2" "" "spool: {path: $M5_TMP/gw/spool.db, max_msgs: $MAX}"

# ---- m5s away: the spool fills to its bound, the broker keeps the rest ----
e2e_m5s_stop
for ((k = 1; k <= MAX; k++)); do
  dev_pub mq1 -V mqttv5 -D publish user-property msgId "sp-$k" -t msgin5g/mq1/out/UE/ue1 \
    -m "spooled $k" || fail "mq1's publish sp-$k failed"
done
wait_spool "$MAX" 15 || fail "the spool does not hold the $MAX messages: $(cat "$M5_TMP/health.json")"
# an MQTT 3.1.1 device, past the bound: acknowledged by the broker, refused by the full spool
dev_pub mq2 -t msgin5g/mq2/out/UE/ue1 -m 'over the bound 1' || fail "mq2's publish failed"
dev_pub mq2 -t msgin5g/mq2/out/UE/ue1 -m 'over the bound 2' || fail "mq2's publish failed"
wait_file_line "$GW_LOG" "spool full \\($MAX messages" 15 ||
  fail "the gateway did not refuse past spool.max_msgs: $(tail -10 "$GW_LOG")"
wait_file_line "$GW_LOG" "uplink: .*; $MAX waiting in the spool, next attempt in" 15 ||
  fail "the gateway does not retry m5s: $(tail -10 "$GW_LOG")"
[[ $(gw_spool_count) == "$MAX" ]] || fail "the spool is past its bound: $(cat "$M5_TMP/health.json")"
echo "ok: m5s away: $MAX spooled, the rest refused by the full spool (kept by the broker), retries"

# ---- kill -9 with the spool full, started again while m5s is still away ----
e2e_gw_kill9
RETRY_RE="no access token yet .*asking again in|next attempt in"
r0=$(gw_log_count "$RETRY_RE")
e2e_gw_start_again
wait_file_line "$GW_LOG" "spool: $MAX messages and reports from before the restart" 10 ||
  fail "the restarted gateway did not load its spool: $(tail -10 "$GW_LOG")"
# (m5s away, the new process has no token yet: it retries that first, with the back-off)
for ((i = 0; i < 100; i++)); do
  (($(gw_log_count "$RETRY_RE") >= r0 + 2)) && break
  sleep 0.1
done
(($(gw_log_count "$RETRY_RE") >= r0 + 2)) || fail "the restarted gateway does not retry: $(tail -10 "$GW_LOG")"
[[ $(gw_spool_count) == "$MAX" ]] || fail "the spool after kill -9: $(cat "$M5_TMP/health.json")"
echo "ok: killed with -9 and started again: the $MAX spooled messages are back, retried"

# ---- m5s back: everything reaches ue1, once ----
restart_m5s
ue_listen ue1 $((MAX + 2)) 40 "$M5_TMP/ue1.out" ||
  m5s_fail "ue1 did not get the $((MAX + 2)) messages: $(cat ue1.out; tail -20 "$GW_LOG")"
got=$(ue_lines ue1.out 'r.msgType === "MSG"' '[r.oriAddr.addr, r.payloadText].join(" ")' | sort)
want=$( (for ((k = 1; k <= MAX; k++)); do echo "mq1 spooled $k"; done
  echo "mq2 over the bound 1"
  echo "mq2 over the bound 2") | sort)
[[ $got == "$want" ]] || fail "ue1 got:
$got
want:
$want"
for ((k = 1; k <= MAX; k++)); do
  [[ $(ue_lines ue1.out "r.msgType === 'MSG' && r.msgId === 'sp-$k'" | wc -l) == 1 ]] ||
    fail "sp-$k did not keep its msgId: $(cat ue1.out)"
done
# exactly once: m5s's record of what it pushed (m5c drops repeats too), and nothing comes later
n=$(m5s_log_count "MSG [^ ]+ delivered to ue1$")
((n == MAX + 2)) || m5s_fail "m5s delivered $n messages to ue1, want $((MAX + 2))"
wait_spool 0 15 || fail "the spool did not empty: $(cat "$M5_TMP/health.json")"
if ue_listen ue1 1 3 "$M5_TMP/ue1-more.out"; then fail "ue1 got more: $(cat "$M5_TMP/ue1-more.out")"; fi
[[ -z $(ue_lines "$M5_TMP/ue1-more.out" 'r.msgType') ]] || fail "ue1 got more: $(cat "$M5_TMP/ue1-more.out")"
echo "ok: m5s back: the $MAX spooled and the 2 the broker kept reached ue1, each once"

# ---- m5s not answering (frozen): the requests time out and are sent again once it answers;
# m5s drops the repeats by msgId ----
r0=$(gw_log_count "next attempt in")
kill -STOP "$M5S_PID"
for k in 1 2; do
  dev_pub mq1 -V mqttv5 -D publish user-property msgId "hang-$k" -t msgin5g/mq1/out/UE/ue1 \
    -m "while m5s hung $k" || { kill -CONT "$M5S_PID"; fail "mq1's publish hang-$k failed"; }
done
for ((i = 0; i < 200; i++)); do
  (($(gw_log_count "next attempt in") > r0)) && break
  sleep 0.1
done
kill -CONT "$M5S_PID"
(($(gw_log_count "next attempt in") > r0)) || fail "no time-out towards a frozen m5s: $(tail -5 "$GW_LOG")"
ue_listen ue1 2 30 "$M5_TMP/ue1-hang.out" || m5s_fail "ue1 did not get hang-1/2: $(cat ue1-hang.out)"
for k in 1 2; do
  [[ $(ue_lines ue1-hang.out "r.msgId === 'hang-$k' && r.payloadText === 'while m5s hung $k'" | wc -l) == 1 ]] ||
    fail "hang-$k: $(cat ue1-hang.out)"
  n=$(m5s_log_count "MSG hang-$k delivered to ue1$")
  ((n == 1)) || m5s_fail "m5s delivered hang-$k to ue1 $n times"
done
wait_spool 0 15 || fail "the spool did not empty: $(cat "$M5_TMP/health.json")"
echo "ok: m5s frozen: timed out, sent again, each reached ue1 once" \
  "(m5s dropped $(m5s_log_count 'MSG hang-[0-9] from mq1: a duplicate') repeats)"
e2e_gw_stop
stop_m5s
echo "PASS"
