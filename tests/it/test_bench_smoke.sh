#!/usr/bin/env bash
# Smoke run of the benchmark's m5s side (bench/m5load, docs/benchmarks.md) so the measurement
# keeps working: a few seconds, a few pairs, against the real m5-aanf and m5s with the durable
# store. It asserts only correctness (messages delivered, none lost or duplicated), never a
# figure: performance is claimed from `make bench`, side by side, not from tests. Also
# m5load --recv-port: the receivers go to that port, the senders to --port.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

[[ -x $M5_BIN/m5load ]] || fail "$M5_BIN/m5load missing (the test build sets -DM5_BENCH=ON)"
PAIRS=3
make_pki
start_aanf
start_m5s "log: {level: warn}"
provision_load_pairs "$PAIRS"

timeout 90 "$M5_BIN/m5load" --port "$M5S_PORT" --server-pid "$M5S_PID" --label smoke \
  --pairs "$PAIRS" --window 20 --warm 0.5 --secs 2 --half 0.5 --drain 5 >load.out 2>load.err ||
  fail "m5load failed: $(tail -5 load.err)"
total=$(grep '^RESULT system=smoke phase=total' load.out) || fail "no total line: $(cat load.out)"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$total"; }
(($(field delivered) > 0)) || fail "nothing delivered: $total"
[[ $(field lost) == 0 && $(field dup) == 0 && $(field failed) == 0 ]] || fail "$total"
echo "bench smoke: ok ($total)"

# --recv-port (bench/js.sh's two-node set-up: senders on node A, receivers on node B): the
# receivers br<k> connect to that port, the senders to --port. With nothing listening there,
# the receivers and only they fail to connect, and m5load exits 1.
pick_ports DEAD
rc=0
timeout 90 "$M5_BIN/m5load" --port "$M5S_PORT" --recv-port "$DEAD" --label smoke2 \
  --pairs "$PAIRS" --window 20 --warm 0.5 --secs 1 --half 0.5 --drain 2 >load2.out 2>load2.err ||
  rc=$?
[[ $rc == 1 ]] || fail "m5load with a dead --recv-port exited $rc, want 1: $(tail -5 load2.err)"
grep -q '^m5load: br0: session down: cannot reach the server' load2.err ||
  fail "the receivers did not go to --recv-port: $(tail -5 load2.err)"
grep -q '^m5load: bs' load2.err && fail "a sender failed: $(grep '^m5load: bs' load2.err)"
echo "bench smoke: --recv-port ok"
