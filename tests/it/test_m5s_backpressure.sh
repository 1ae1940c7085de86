#!/usr/bin/env bash
# Back-pressure instead of refusal (docs/delivery.md "Back-pressure", issue 11): with the
# store's queue far smaller than what the devices have in flight (store.queue 8: 2 accepts at
# once for each of the 2 workers; 12 pairs x a CoAP window of 20 = 240 MSGs in flight), every
# MSG is delivered and none is answered 5.03: requests wait unanswered in their worker, and
# each device's own window holds back its next ones (msgin5g_requests_waited_total > 0,
# msgin5g_requests_busy_total 0). The waiting requests are reported and gone once it is over
# (msgin5g_requests_waiting and its bytes back to 0), so are the accepts; devices that vanish
# while their requests wait leave nothing behind. It asserts delivery and the counters, never
# a timing.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

[[ -x $M5_BIN/m5load ]] || fail "$M5_BIN/m5load missing (the test build sets -DM5_BENCH=ON)"
PAIRS=12
make_pki
start_aanf
start_m5s "log: {level: warn}
store: {queue: 8}"
provision_load_pairs "$PAIRS"

timeout 120 "$M5_BIN/m5load" --port "$M5S_PORT" --server-pid "$M5S_PID" --label bp \
  --pairs "$PAIRS" --window 20 --warm 0.5 --secs 2 --half 0.5 --drain 10 >load.out 2>load.err ||
  fail "m5load failed: $(tail -5 load.err)"
total=$(grep '^RESULT system=bp phase=total' load.out) || fail "no total line: $(cat load.out)"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$total"; }
(($(field delivered) > 0)) || fail "nothing delivered: $total"
[[ $(field lost) == 0 && $(field dup) == 0 && $(field failed) == 0 ]] ||
  fail "messages refused or lost under back-pressure: $total $(grep -m3 -i 'fail\|5\.03' load.err)"

metric() { sed -n "s/^$1 \([0-9]*\)$/\1/p" metrics.txt; }
for ((i = 0; i < 50; i++)); do
  curl -s --max-time 5 -o metrics.txt "$M5S_ADMIN/metrics" || fail "GET /metrics"
  [[ $(metric msgin5g_accepts_in_flight) == 0 && $(metric msgin5g_requests_waiting) == 0 ]] && break
  sleep 0.1
done
waited=$(metric msgin5g_requests_waited_total)
busy=$(metric msgin5g_requests_busy_total)
[[ -n $waited && -n $busy ]] || fail "no back-pressure figures in /metrics: $(cat metrics.txt)"
((waited > 0)) || fail "no request waited: the store queue was never full ($total)"
((busy == 0)) || fail "$busy requests were answered 5.03 busy"
for m in msgin5g_accepts_in_flight msgin5g_accepts_in_flight_bytes msgin5g_requests_waiting \
  msgin5g_requests_waiting_bytes; do
  [[ $(metric $m) == 0 ]] || fail "$m is $(metric $m) after the load: $(grep in_flight metrics.txt)"
done
# Devices that vanish while their requests wait: m5load killed while requests wait. Their
# sessions close, the waiting requests are let go (not answered into the closing connection),
# m5s stays up and its gauges return to 0.
"$M5_BIN/m5load" --port "$M5S_PORT" --label gone --pairs "$PAIRS" --window 20 --warm 0 \
  --secs 30 --half 0 --drain 1 >gone.out 2>gone.err &
GEN=$!
seen=0
for ((i = 0; i < 300; i++)); do
  curl -s --max-time 5 -o metrics.txt "$M5S_ADMIN/metrics" || fail "GET /metrics"
  w=$(metric msgin5g_requests_waiting)
  if [[ -n $w ]] && ((w > 0)); then seen=1 && break; fi
  kill -0 "$GEN" 2>/dev/null || break
  sleep 0.05
done
kill -KILL "$GEN" 2>/dev/null || true
wait "$GEN" 2>/dev/null || true
((seen)) || fail "no request waited while the second load ran: $(tail -3 gone.err)"
for ((i = 0; i < 100; i++)); do
  curl -s --max-time 5 -o metrics.txt "$M5S_ADMIN/metrics" || fail "m5s gone after its devices vanished"
  [[ $(metric 'msgin5g_sessions{transport="tls"}') == 0 && $(metric msgin5g_requests_waiting) == 0 &&
    $(metric msgin5g_accepts_in_flight) == 0 ]] && break
  sleep 0.1
done
for m in msgin5g_requests_waiting msgin5g_requests_waiting_bytes msgin5g_accepts_in_flight; do
  [[ $(metric $m) == 0 ]] || fail "$m is $(metric $m) after the devices vanished"
done
kill -0 "$M5S_PID" || fail "m5s died after its devices vanished"

echo "back-pressure: ok ($total; $waited requests waited, none refused)"
