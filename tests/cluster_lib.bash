# shellcheck shell=bash
# Two m5s nodes sharing one NATS JetStream (issue 13), for the cluster tests; sourced after
# tests/lib.sh and tests/nats_lib.bash, once the PKI (make_pki) and the AAnF (start_aanf) are up.

# start_two_nodes PREFIX: one nats-server (replicas 1) and m5s nodes a and b on it (store and
# registry under store.js.prefix PREFIX; own ports, SQLite files and logs; one PKI; one admin
# token file: mgmt.token_file's default relative to $M5_TMP, written by a, read by b). Sets
# A_PID A_PORT A_ADMIN A_LOG and B_PID B_PORT B_ADMIN B_LOG; node a is addressed afterwards.
start_two_nodes() {
  local js_line
  start_nats_cluster 1
  js_line="store: {backend: jetstream, js: {servers: [${NATS_URLS}], replicas: 1, prefix: $1}}"
  start_m5s "$js_line" "node: {name: a}"
  A_PID=$M5S_PID A_PORT=$M5S_PORT A_ADMIN=$M5S_ADMIN A_LOG=$M5S_LOG
  B_LOG=$M5_TMP/m5s-b.log
  M5S_DB=$M5_TMP/m5s-b/m5s.db launch_daemon "$M5_BIN/m5s" write_m5s_config \
    "$M5_TMP/m5s-b.yaml" "$B_LOG" M5S_MGMT "$js_line" "node: {name: b}" || {
    tail -n 40 "$B_LOG" >&2
    fail "node b did not become healthy"
  }
  B_PID=$LAUNCH_PID B_PORT=$M5S_PORT B_ADMIN="http://127.0.0.1:$M5S_MGMT"
  address a
}

# address NODE: the M5S_* variables lib.sh's helpers use, for node a or b.
address() {
  if [[ $1 == a ]]; then
    M5S_PID=$A_PID M5S_PORT=$A_PORT M5S_ADMIN=$A_ADMIN M5S_LOG=$A_LOG
  else
    M5S_PID=$B_PID M5S_PORT=$B_PORT M5S_ADMIN=$B_ADMIN M5S_LOG=$B_LOG
  fi
}

# stop_two_nodes: both m5s stopped cleanly (by pid).
stop_two_nodes() {
  address a
  stop_m5s
  address b
  stop_m5s
}
