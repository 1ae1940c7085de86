#!/usr/bin/env bash
# Interop: AKMA key fetches cannot be turned against m5s (docs/m5s.md "Bounds before a UE has
# proved anything"). A flood of 5,000 TLS 1.3 ClientHellos, each with a random A-KID in its
# pre_shared_key identity, from 127.0.1.1-254 (one /24; akma_flood.c, OpenSSL), while the
# AAnF m5s asks is slow: a node HTTP/2 server (slow_aanf.mjs) that holds every unknown A-KID
# 2 s and answers 204, and passes the real UE's requests at once to a real m5-aanf.
#  - with the default bounds the slow AAnF receives at most workers x (unknown_akid_burst +
#    unknown_akid_per_s x seconds) flood requests, m5s stays up, counts the refusals in
#    /metrics, and a real UE from 127.0.0.1 registers during the flood with m5c's normal
#    timeout (the time it took is printed, not asserted);
#  - the control: the same flood against m5s with every bound set huge reaches the AAnF
#    thousands of times (the flood is real, and the bounds are what stops it).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI1=001010000000301
KAUSF1=303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f
N=5000
CONC=600
HOLD_MS=1500
DELAY_MS=2000
WORKERS=2
BURST=128 # the defaults of aanf.unknown_akid_burst and aanf.unknown_akid_per_s
RATE=10

FLOOD="$M5_TMP/akma_flood"
cc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -o "$FLOOD" "$M5_SRC/tests/interop/akma_flood.c" \
  $(pkg-config --cflags --libs openssl) 2>build.log || fail "building akma_flood: $(cat build.log)"
"$M5_SRC/tests/schema/ensure-node-deps.sh" >/dev/null 2>&1 || true

make_pki
start_aanf
REAL_AANF_URL=$AANF_URL

# --- the slow AAnF ---
pick_ports SLOW_PORT
REAL_FILE="$M5_TMP/real_akids"
COUNT_FILE="$M5_TMP/slow_count.json"
: >"$REAL_FILE"
node "$M5_SRC/tests/interop/slow_aanf.mjs" "$SLOW_PORT" "$M5_TMP/pki/aanf.key" \
  "$M5_TMP/pki/aanf.crt" "$M5_TMP/pki/ca.crt" "$REAL_AANF_URL" "$M5_TMP/pki/m5s.crt" \
  "$M5_TMP/pki/m5s.key" "$REAL_FILE" "$DELAY_MS" "$COUNT_FILE" >slow.out 2>&1 &
SLOW_PID=$!
track_pid "$SLOW_PID"
wait_file_line slow.out 'listening' 10 "$SLOW_PID" || fail "slow AAnF did not start: $(cat slow.out)"
slow_field() { node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
  console.log(s[process.argv[2]])' "$COUNT_FILE" "$1"; }

# m5s's ue: line gets UE_EXTRA (the per-address handshake bounds live there).
UE_EXTRA=""
write_flood_config() {
  write_m5s_config "$@"
  [[ -z $UE_EXTRA ]] || sed -i "s/^ue: {\(.*\)}$/ue: {\1, $UE_EXTRA}/" "$1"
}
# start_flood_m5s EXTRA_AANF: m5s with the slow AAnF (aanf: line + EXTRA_AANF).
start_flood_m5s() {
  M5S_LOG="$M5_TMP/m5s.log"
  : >"$M5S_LOG"
  AANF_URL="https://localhost:$SLOW_PORT"
  launch_daemon "$M5_BIN/m5s" write_flood_config "$M5_TMP/m5s.yaml" "$M5S_LOG" M5S_MGMT \
    "workers: $WORKERS" "log: {level: info}" "aanf: {url: $AANF_URL${1:+, $1}}" ||
    m5s_fail "m5s did not become healthy"
  M5S_PID=$LAUNCH_PID
  M5S_ADMIN="http://127.0.0.1:$M5S_MGMT"
  AANF_URL=$REAL_AANF_URL
}
metric() { curl -sf --max-time 5 "$M5S_ADMIN/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
refused_total() {
  curl -sf --max-time 5 "$M5S_ADMIN/metrics" |
    awk '/^msgin5g_akma_refused_total/ { s += $2 } END { print s + 0 }'
}
# wait_quiet: until the slow AAnF has nothing in flight (at most DELAY + 3 s).
wait_quiet() {
  local i
  for ((i = 0; i < (DELAY_MS / 100) + 30; i++)); do
    [[ $(slow_field inflight) == 0 ]] && return 0
    sleep 0.1
  done
}

# ===== with the default bounds =====
# (aanf.timeout_ms well above the slow AAnF's hold: m5s gives a source its token back when
# the AAnF fails, timeouts included, so on a loaded machine, where node's 2 s hold can pass
# 3 s, the default timeout let more than the bound through, by design.)
start_flood_m5s "timeout_ms: 15000"
T0=$(now_ms)
setup_ue ue1 "$SUPI1" "$KAUSF1"
akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid >"$REAL_FILE"
[[ -s $REAL_FILE ]] || fail "no A-KID for ue1"

"$FLOOD" "$M5S_PORT" "$N" "$CONC" "$HOLD_MS" 127.0.1 >flood.out 2>&1 &
FLOOD_PID=$!
track_pid "$FLOOD_PID"
for ((i = 0; i < 100; i++)); do # the flood has reached the AAnF
  (($(slow_field count) >= 50)) && break
  kill -0 "$FLOOD_PID" 2>/dev/null || break
  sleep 0.1
done
(($(slow_field count) >= 50)) || m5s_fail "the flood did not reach the AAnF: $(cat flood.out)"

# A real UE from 127.0.0.1 registers during the flood, with m5c's normal timeout.
kill -0 "$FLOOD_PID" 2>/dev/null || fail "the flood ended before the real UE started"
R0=$(now_ms)
rc=0
"$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "coaps+tcp://127.0.0.1:$M5S_PORT" register \
  >reg.out 2>&1 || rc=$?
R1=$(now_ms)
flooding=0
kill -0 "$FLOOD_PID" 2>/dev/null && flooding=1
[[ $rc == 0 ]] || m5s_fail "ue1 could not register during the flood (exit $rc): $(cat reg.out)"
grep -q '"msgType":"REG"' reg.out || m5s_fail "ue1's register printed no REG answer: $(cat reg.out)"
echo "real UE registered during the flood in $((R1 - R0)) ms (flood still running: $flooding)"

wait_pid_rc "$FLOOD_PID" 60
[[ $WAIT_RC == 0 ]] || m5s_fail "akma_flood exited $WAIT_RC: $(cat flood.out)"
wait_quiet
T1=$(now_ms)
COUNT=$(slow_field count)
SECS=$(((T1 - T0 + 999) / 1000))
BOUND=$((WORKERS * (BURST + RATE * SECS)))
REFUSED=$(refused_total)
FETCHES=$(metric msgin5g_akma_fetches_total)
echo "defaults: flood $(cat flood.out); AAnF saw $COUNT flood requests in ${SECS} s (bound" \
  "$BOUND), at most $(slow_field maxInflight) at once; m5s refused $REFUSED handshakes, sent" \
  "$FETCHES fetches"
curl -sf --max-time 5 "$M5S_ADMIN/metrics" | grep '^msgin5g_akma' || true
((COUNT <= BOUND)) || m5s_fail "the AAnF saw $COUNT flood requests, more than $BOUND"
((COUNT < N / 2)) || m5s_fail "the AAnF saw $COUNT of $N flood requests"
# m5s's own count (the real UE's fetch included) holds the same bound.
((FETCHES <= BOUND + 1)) || m5s_fail "m5s started $FETCHES AAnF fetches, more than $BOUND + 1"
((REFUSED > 0)) || m5s_fail "m5s counted no refused handshakes in /metrics"
curl -sf --max-time 5 "$M5S_ADMIN/healthz" >/dev/null || m5s_fail "m5s is not healthy after the flood"
kill -0 "$M5S_PID" 2>/dev/null || m5s_fail "m5s died during the flood"
grep -q 'handshake refused (' "$M5S_LOG" || m5s_fail "m5s logged no refusal"
stop_daemon "$M5S_PID" m5s || m5s_fail "m5s did not stop cleanly"

# ===== control: every bound huge =====
BEFORE=$(slow_field count)
UE_EXTRA="max_handshakes: 100000, max_handshakes_per_addr: 100000, max_handshakes_per_prefix: 100000"
start_flood_m5s "max_fetches: 100000, max_fetches_per_addr: 100000, max_fetches_per_prefix: 100000, unknown_akid_burst: 10000000"
"$FLOOD" "$M5S_PORT" "$N" "$CONC" "$HOLD_MS" 127.0.1 >flood2.out 2>&1 &
FLOOD_PID=$!
track_pid "$FLOOD_PID"
wait_pid_rc "$FLOOD_PID" 60
[[ $WAIT_RC == 0 ]] || m5s_fail "akma_flood (control) exited $WAIT_RC: $(cat flood2.out)"
wait_quiet
CONTROL=$(($(slow_field count) - BEFORE))
echo "bounds huge: flood $(cat flood2.out); AAnF saw $CONTROL flood requests"
((CONTROL > BOUND && CONTROL >= 2000)) ||
  m5s_fail "control: with the bounds huge the AAnF saw only $CONTROL flood requests"
stop_daemon "$M5S_PID" m5s || m5s_fail "m5s did not stop cleanly"
stop_aanf
echo "m5s AKMA flood: ok"
