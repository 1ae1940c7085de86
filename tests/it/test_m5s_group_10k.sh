#!/usr/bin/env bash
# Integration: a message to a 10,000-member group with half the members offline, across an m5s
# restart (issue 10, "Bad input and faults"; docs/delivery.md), against the real m5-aanf and m5s.
# One C process drives the members (bench/m5fan: thousands of UE sessions on one loop, CoAP over
# TLS 1.3 with the AKMA PSK), not thousands of CLI processes.
#  - 10,000 members and a sender provisioned in bulk (`m5ctl subscriber import`);
#  - FANOUT=group (default): a group of all 10,000 plus the sender, created through the admin
#    API in batches of 500 (POST /admin/v1/groups/{id}/members); FANOUT=topic: the members
#    subscribe to a Messaging Topic instead (TOPICSUB; the offline half beforehand);
#  - members 0..4,999 online, the sender sends M5_FAN_K (3) messages with stoAndFwInd to the
#    group (or topic): each online member gets each once, nothing reaches the sender;
#  - m5s is stopped (SIGTERM, its exit waited for by pid) and started again on the same store
#    and database;
#  - all 10,000 come online: each of the half that was offline gets each message once, the other
#    half gets nothing again (m5fan keeps waiting for a quiet period once everything arrived,
#    and its state file carries what the first run got, so a re-delivery counts as duplicate).
#  - with the default 32 handshakes at once, m5s refuses none of the fleet's handshakes (its
#    per-source bounds, docs/m5s.md: the test sets no m5s key; measured: 128 at once passed
#    without a refusal, 600 at once met ue.max_handshakes_per_addr and aanf.max_fetches_per_addr
#    and m5fan's retries got every member in).
# Timings (import, group, handshakes/s, registrations, fan-out deliveries/s, restart) are logged,
# never asserted. Environment: FANOUT=group|topic, M5_FAN_N (10000), M5_FAN_K (3),
# M5_FAN_PARALLEL (handshakes at once, 32), M5_FAN_BIN (a directory with m5s, m5-aanf, m5ctl and
# m5fan to use instead of M5_BIN, e.g. build/release/bin: see docs/testing.md).
#
# Group messages need the group fan-out in m5s; without it the sender is refused
# (DELY_FAILED NOT_AUTHORIZED) and this test fails saying so; FANOUT=topic runs today.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

FANOUT=${FANOUT:-group}
N=${M5_FAN_N:-10000}
K=${M5_FAN_K:-3}
PAR=${M5_FAN_PARALLEL:-32}
HALF=$((N / 2))
GROUP=fleet.all
TOPIC=fleet.all
[[ $FANOUT == group || $FANOUT == topic ]] || fail "FANOUT=$FANOUT: want group or topic"
[[ -n ${M5_FAN_BIN:-} ]] && M5_BIN=$(cd "$M5_FAN_BIN" && pwd)
FAN=$M5_BIN/m5fan
[[ -x $FAN ]] || fail "$FAN missing (the test build sets -DM5_BENCH=ON)"
DEST=group:$GROUP
[[ $FANOUT == topic ]] && DEST=topic:$TOPIC
echo "fan-out to $DEST: $N members, $K messages, binaries $M5_BIN"
T_ALL=$(now_ms)

# m5s at info (not the tests' debug: 10,000 sessions), store and database kept across restarts.
M5S_EXTRA=("log: {level: info}")
make_pki
start_aanf "log: {level: warn}"
start_m5s "${M5S_EXTRA[@]}"

# ---- provisioning: 10,000 members + the sender, in bulk ---------------------------------------
"$FAN" --print-subscribers --members "$N" >subs.txt
t0=$(now_ms)
timeout 120 "$M5_BIN/m5ctl" subscriber import subs.txt --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" \
  --pki "$M5_TMP/pki" >import.out 2>import.err || m5s_fail "import: $(head -5 import.err)"
echo "timing: imported $((N + 1)) subscribers in $(($(now_ms) - t0)) ms: $(cat import.out)"

# fan NAME ARGS...: m5fan against the running m5s; its RESULT line in RES, exit status in FAN_RC.
fan() {
  local name=$1
  shift
  FAN_RC=0
  timeout 150 "$FAN" --port "$M5S_PORT" --members "$N" --parallel "$PAR" --label "$name" \
    --timeout 120 "$@" >"$name.out" 2>"$name.err" || FAN_RC=$?
  RES=$(grep "^RESULT system=$name " "$name.out") ||
    m5s_fail "$name: no RESULT (exit $FAN_RC): $(tail -5 "$name.err")"
  echo "$name: $RES"
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$RES"; }
# With at most 32 handshakes + REGs at once (the default), the fleet from 127.0.0.1 stays inside
# m5s's per-source bounds (ue.max_handshakes_per_addr 256 and aanf.max_fetches_per_addr 64 per
# worker; docs/m5s.md): no handshake may be refused (m5fan would retry it: retries=N).
RETRIES=()
[[ $PAR -le 32 ]] && RETRIES=(retries=0)
expect() { # RUN NAME=VALUE...: fields of RES
  local run=$1 kv
  shift
  for kv in "$@"; do
    [[ $(field "${kv%%=*}") == "${kv#*=}" ]] ||
      m5s_fail "$run: want ${kv%%=*}=${kv#*=}: $RES; m5fan: $(grep -v '^m5fan: [0-9]* s:' "$run.err" | tail -8)"
  done
}
timings() { # RUN: the figures of its RESULT, for the log
  echo "timing: $1: handshakes+REG of $(field registered) members in $(field connect_s) s" \
    "($(field hs_per_s)/s, $PAR at once), $(field received) deliveries in $(field fanout_s) s" \
    "($(field deliveries_per_s)/s), each message reached all in $(field reach_max_ms) ms at most;" \
    "whole run $(field seconds) s (including a quiet period)"
}

# ---- the group (or the offline half's topic subscriptions) --------------------------------------
t0=$(now_ms)
if [[ $FANOUT == group ]]; then
  ST=$(admin_curl -s -o grp.json -w '%{http_code}' -X PUT "$M5S_ADMIN/admin/v1/groups/$GROUP")
  [[ $ST == 201 ]] || m5s_fail "PUT group: $ST $(cat grp.json)"
  # batches of 500 principals (the management port takes bodies up to 16 KiB)
  /usr/bin/python3 -c 'import json, sys
ids = [l.split()[2] for l in open(sys.argv[1]) if l.strip()]
for k in range(0, len(ids), 500):
    open("batch.%05d.json" % k, "w").write(json.dumps(["ue:" + i for i in ids[k:k + 500]]))' subs.txt
  for b in batch.*.json; do
    ST=$(admin_curl -s -o add.json -w '%{http_code}' -X POST -H 'content-type: application/json' \
      --data-binary "@$b" "$M5S_ADMIN/admin/v1/groups/$GROUP/members")
    [[ $ST == 200 ]] || m5s_fail "POST members ($b): $ST $(cat add.json)"
  done
  [[ $(json_get add.json members) == $((N + 1)) ]] || m5s_fail "group size: $(cat add.json)"
  echo "timing: group of $((N + 1)) created in $(($(now_ms) - t0)) ms ($(ls batch.*.json | wc -l) batches)"
else
  fan sub --range "$HALF:$N" --topic "$TOPIC" --quiet 0
  [[ $FAN_RC == 0 ]] || m5s_fail "subscribing $HALF..$((N - 1)): exit $FAN_RC: $(tail -5 sub.err)"
  expect sub registered=$((N - HALF)) subscribed=$((N - HALF)) received=0 "${RETRIES[@]}"
  timings sub
fi

# ---- half online, K messages with stoAndFwInd --------------------------------------------------
TOPIC_ARGS=()
[[ $FANOUT == topic ]] && TOPIC_ARGS=(--topic "$TOPIC")
fan first --range "0:$HALF" "${TOPIC_ARGS[@]}" --send "$K" --to "$DEST" --state state.txt --quiet 3
if [[ $FAN_RC != 0 ]] && grep -q 'NOT_AUTHORIZED' first.err && [[ $FANOUT == group ]]; then
  m5s_fail "the sender's group messages were refused NOT_AUTHORIZED: this m5s has no group" \
    "fan-out yet (FANOUT=topic runs the same test on a Messaging Topic): $(grep 'MSG ' first.err | head -2)"
fi
[[ $FAN_RC == 0 ]] || m5s_fail "first run: exit $FAN_RC: $(grep -v '^m5fan: [0-9]* s:' first.err | tail -8)"
expect first members=$HALF registered=$HALF sent="$K" expected="$K" received=$((HALF * K)) \
  duplicates=0 missing=0 unexpected=0 lost=0 refused=0 "${RETRIES[@]}"
timings first

# ---- restart m5s on the same store and database ---------------------------------------------------
t0=$(now_ms)
OLD_PID=$M5S_PID
stop_m5s
kill -0 "$OLD_PID" 2>/dev/null && fail "m5s pid $OLD_PID still there after its exit"
start_m5s "${M5S_EXTRA[@]}"
echo "timing: m5s stopped and healthy again in $(($(now_ms) - t0)) ms (pid $OLD_PID -> $M5S_PID)"

# ---- everyone online: the offline half gets each message once, the other half nothing ----------
fan second --range "0:$N" --state state.txt --quiet 3
[[ $FAN_RC == 0 ]] || m5s_fail "second run: exit $FAN_RC: $(grep -v '^m5fan: [0-9]* s:' second.err | tail -8)"
expect second members="$N" registered="$N" expected="$K" received=$(((N - HALF) * K)) \
  duplicates=0 missing=0 unexpected=0 lost=0 refused=0 "${RETRIES[@]}"
timings second
# every (member, msgId) exactly once over both runs, from the state file itself
[[ $(grep -c '^R ' state.txt) == $((N * K)) && $(grep -c '^D ' state.txt || true) == 0 ]] ||
  fail "state file: $(grep -c '^R ' state.txt) deliveries recorded, want $((N * K))"
[[ $(grep '^R ' state.txt | sort -u | wc -l) == $((N * K)) ]] || fail "state file: a pair twice"
refused=$(curl -s --max-time 5 "$M5S_ADMIN/metrics" | awk '/^msgin5g_akma_refused_total/ {s += $2} END {print s + 0}')
echo "handshakes refused by m5s's per-source bounds after the restart: $refused"
[[ ${#RETRIES[@]} == 0 || $refused == 0 ]] || m5s_fail "m5s refused $refused handshakes of the fleet"
stop_m5s
echo "group 10k ($FANOUT): ok in $(($(now_ms) - T_ALL)) ms"
