#!/usr/bin/env bash
# m5s on the JetStream message store (issue 13; docs/admin-api.md /healthz and "Metrics"): with
# `store.backend: jetstream` on one nats-server, m5s starts and is healthy, /metrics reports
# msgin5g_store_js_connected 1; while the nats-server is down /healthz answers 503 "NATS
# unreachable" and the gauge reads 0; once it is back m5s is healthy again by itself.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/nats_lib.bash"

start_nats_cluster 1
make_pki
start_aanf
start_m5s "store: {backend: jetstream, js: {servers: [${NATS_URLS}], prefix: health, timeout_ms: 2000}}" \
  "node: {name: a}"

# wait_health_is CODE WORD: /healthz answers CODE with WORD in its body (30 s bound).
wait_health_is() {
  local i body
  for ((i = 0; i < 300; i++)); do
    body=$(curl -s --max-time 5 -w ' %{http_code}' "$M5S_ADMIN/healthz" || true)
    [[ $body == *"$2"*" $1" ]] && return 0
    sleep 0.1
  done
  m5s_fail "/healthz never answered $1 $2 (last: $body)"
}

metric() { curl -s --max-time 5 "$M5S_ADMIN/metrics" | sed -n "s/^$1 //p"; }

wait_health_is 200 '"ok"'
[[ $(metric msgin5g_store_js_connected) == 1 ]] || m5s_fail "js_connected is not 1"
echo "healthy on the JetStream store"

stop_nats_node 1
wait_health_is 503 'NATS unreachable'
[[ $(metric msgin5g_store_js_connected) == 0 ]] || m5s_fail "js_connected is not 0 with NATS down"
echo "503 while NATS is down"

start_nats_node 1
wait_nats_healthy 1
wait_health_is 200 '"ok"'
[[ $(metric msgin5g_store_js_connected) == 1 ]] || m5s_fail "js_connected is not 1 again"
echo "healthy again"
stop_daemon "$M5S_PID" m5s || m5s_fail "m5s did not stop cleanly"
echo ok
