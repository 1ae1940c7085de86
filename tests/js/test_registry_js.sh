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
# the buckets (groups too); a re-bind or an AS client's deletion made on one node clears what
# the old holder had in the groups made on the other; groups and their members, grants and
# deletions made on either node reach the other (concurrent changes of one group serialised,
# both nodes' change hooks run, a group made again starts above the deleted one's generation
# without its members); after a restart of nats-server,
# changes flow between the nodes again. Then the same (without the restart) on three servers with
# buckets of 3 replicas.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/nats_lib.bash"
DRV="$M5_BIN/registry_js_driver"

echo "=== 1 server: the scenario, then a restart of the server under both nodes"
start_nats_cluster 1
mkdir -p "$M5_TMP/reg1"
# the driver waits for "restarted" after it printed "restart nats": the server is stopped and
# started again meanwhile (same ports and store directory)
timeout 240 "$DRV" "$NATS_URLS" m5t "$M5_TMP/reg1" 1 "$M5_TMP/restarted" >driver1.out 2>&1 &
drv=$!
track_pid "$drv"
wait_file_line driver1.out '^restart nats$' 120 "$drv" || { cat driver1.out >&2; fail "the driver did not get to the restart"; }
stop_nats_node 1
start_nats_node 1
wait_nats_healthy 1
touch "$M5_TMP/restarted"
rc=0
wait "$drv" || rc=$?
grep -v ' INFO ' driver1.out
((rc == 0)) || { cat driver1.out >&2; fail "registry_js_driver failed (exit $rc)"; }
grep -q '^PASS$' driver1.out || fail "the driver did not finish"
[[ $(grep -c '^ok ' driver1.out) == 17 ]] || fail "steps missing"
stop_nats_cluster
rm -rf "$M5_TMP/nats"

# Three servers, buckets R3: a follower may not have applied the last write yet (the reads that
# must see it go through the stream leader: js_client.h m5_js_kv_get).
echo "=== 3 servers, replicas 3"
start_nats_cluster 3
mkdir -p "$M5_TMP/reg3"
if ! timeout 240 "$DRV" "$NATS_URLS" m5r3 "$M5_TMP/reg3" 3 >driver3.out 2>&1; then
  cat driver3.out >&2
  fail "registry_js_driver (3 servers) failed"
fi
grep -v ' INFO ' driver3.out
grep -q '^PASS$' driver3.out || fail "the driver (3 servers) did not finish"
[[ $(grep -c '^ok ' driver3.out) == 16 ]] || fail "steps missing (3 servers)"
echo PASS
