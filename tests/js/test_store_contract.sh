#!/usr/bin/env bash
# The message store's behaviour tests (tests/unit/test_store.c) against the JetStream backend
# (issue 13): one nats-server on random loopback ports, then `test_store --jetstream URL`. Each
# test works in streams of its own (a prefix per test); the tests of what the JetStream backend
# does not do yet, and of SQLite's file, are printed as skipped with their reason. Also the
# two-node test (test_js_two_nodes): a delivery for a recipient of node b is due on b, DUE on a
# moves b's queue to a in priority order, b's conclusion after the move is M5_ENOENT.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/nats_lib.bash"

start_nats_cluster 1
rc=0
timeout 240 "$M5_BIN/test_store" --jetstream "$NATS_URLS" >contract.out 2>&1 || rc=$?
cat contract.out
((rc == 0)) || fail "test_store --jetstream failed (exit $rc)"
grep -q '^\[ SKIPPED  \] test_crash_durability on jetstream: ' contract.out || fail "skips not listed"
grep -q '^\[       OK \] test_js_two_nodes' contract.out || fail "the two-node test did not run"
echo "ok"
