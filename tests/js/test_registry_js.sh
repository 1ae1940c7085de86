#!/usr/bin/env bash
# The m5s registry shared through NATS KV (store.backend jetstream; src/server/registry/
# registry_js.c, issue 13) against a real nats-server: two registry instances, nodes a and b,
# each with its own SQLite file as two m5s processes have, on one server and prefix
# (registry_js_driver): a binding made on one node is seen by the other; a re-bind takes a
# larger generation and runs the other node's change hook (the server closes the sessions it
# invalidates there); a removal is a tombstone, so binding the ID again still takes a larger
# generation; a registration carries the node holding the session, a REG under a generation
# re-bound on the other node a moment ago is refused (the shared binding is read at REG), the
# UE moving to the other node runs the first node's hook; concurrent binds on both nodes are
# serialised; AS clients and their registration (with its node), the stored policy and gateway
# clients with the IDs they hold (one space with the bindings, new generations at each
# hand-over) made on one node apply on the other; a restarted node gets everything back from
# the buckets; groups stay per node, but a re-bind or an AS client's deletion made on one node
# clears what the old holder had in the other node's groups; after a restart of nats-server,
# changes flow between the nodes again.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/nats_lib.bash"
DRV="$M5_BIN/registry_js_driver"

start_nats_cluster 1
mkdir -p "$M5_TMP/reg"
# the driver waits for "restarted" after it printed "restart nats": the server is stopped and
# started again meanwhile (same ports and store directory)
timeout 240 "$DRV" "$NATS_URLS" m5t "$M5_TMP/reg" "$M5_TMP/restarted" >driver.out 2>&1 &
drv=$!
track_pid "$drv"
wait_file_line driver.out '^restart nats$' 120 "$drv" || { cat driver.out >&2; fail "the driver did not get to the restart"; }
stop_nats_node 1
start_nats_node 1
wait_nats_healthy 1
touch "$M5_TMP/restarted"
rc=0
wait "$drv" || rc=$?
cat driver.out
((rc == 0)) || fail "registry_js_driver failed (exit $rc)"
grep -q '^PASS$' driver.out || fail "the driver did not finish"
[[ $(grep -c '^ok ' driver.out) == 16 ]] || fail "steps missing"
echo PASS
