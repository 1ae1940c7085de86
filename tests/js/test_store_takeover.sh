#!/usr/bin/env bash
# The takeover of a dead m5s node's deliveries on the JetStream store (issue 13,
# src/lib/store/js_takeover.c): one nats-server on random loopback ports, then
# store_takeover_driver (tests/js/store_takeover_driver.c): node b's UE, AS and report
# deliveries taken over by node a once b stops writing its liveness key; two takers at once:
# one lease, every delivery on one of them exactly once; two live nodes: nothing moves.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/nats_lib.bash"

start_nats_cluster 1
rc=0
timeout 280 "$M5_BIN/store_takeover_driver" "$NATS_URLS" >takeover.out 2>&1 || rc=$?
cat takeover.out
((rc == 0)) || fail "store_takeover_driver failed (exit $rc)"
for t in test_takeover test_takeover_race test_no_self_takeover; do
  grep -q "^\[       OK \] $t\$" takeover.out || fail "$t did not pass"
done
echo "ok"
