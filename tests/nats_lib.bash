# shellcheck shell=bash
# NATS JetStream servers for the tests (issue 13), sourced after tests/lib.sh: a cluster of N
# nats-server processes on random free loopback ports, configs and stores under $M5_TMP, every
# process tracked by pid (lib.sh kills them on exit).
# After start_nats_cluster N: NATS_URLS (comma-separated client URLs), NATS_PID[i],
# NATS_PORT[i], NATS_MON[i] (monitoring port), NATS_CONF[i] for i = 1..N.

command -v nats-server >/dev/null || fail "nats-server is not installed (make deps)"

NATS_PID=()
NATS_PORT=()
NATS_MON=()
NATS_CONF=()
NATS_URLS=""

# write_nats_conf I N: the config of node I of N (a cluster block only when N > 1).
write_nats_conf() {
  local i=$1 n=$2 j conf="$M5_TMP/nats/n$1.conf"
  mkdir -p "$M5_TMP/nats/js$i"
  {
    echo "server_name: n$i"
    echo "listen: 127.0.0.1:${NATS_PORT[$i]}"
    echo "http: 127.0.0.1:${NATS_MON[$i]}"
    echo "jetstream {"
    echo "  store_dir: \"$M5_TMP/nats/js$i\""
    echo "  max_memory_store: 64MB"
    echo "  max_file_store: 1GB"
    echo "}"
    # NATS_EXTRA_CONF (optional): more lines for every node (e.g. tls and authorization blocks)
    [[ -z ${NATS_EXTRA_CONF:-} ]] || echo "$NATS_EXTRA_CONF"
    if ((n > 1)); then
      echo "cluster {"
      echo "  name: m5test"
      echo "  listen: 127.0.0.1:${NATS_ROUTE[$i]}"
      echo "  routes: ["
      for ((j = 1; j <= n; j++)); do echo "    nats-route://127.0.0.1:${NATS_ROUTE[$j]}"; done
      echo "  ]"
      echo "}"
    fi
  } >"$conf"
  NATS_CONF[$i]=$conf
  nats-server -t -c "$conf" >/dev/null 2>&1 || fail "nats config $conf is not valid"
}

# start_nats_node I: starts node I from its config (written by start_nats_cluster).
start_nats_node() {
  local i=$1
  nats-server -c "${NATS_CONF[$i]}" -l "$M5_TMP/nats/n$i.log" &
  NATS_PID[$i]=$!
  track_pid "${NATS_PID[$i]}"
}

# wait_nats_healthy I [SECONDS]: until node I's /healthz answers 200 (JetStream ready).
wait_nats_healthy() {
  local i=$1 secs=${2:-60} t=0
  while ((t < secs * 10)); do
    kill -0 "${NATS_PID[$i]}" 2>/dev/null || { tail -n 20 "$M5_TMP/nats/n$i.log" >&2; fail "nats-server n$i died"; }
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${NATS_MON[$i]}/healthz") == 200 ]] && return 0
    sleep 0.1
    t=$((t + 1))
  done
  fail "nats-server n$i not healthy after ${secs}s"
}

# start_nats_cluster N: N nodes (1 = a single server without cluster), all healthy.
start_nats_cluster() {
  local n=$1 i
  NATS_ROUTE=()
  mkdir -p "$M5_TMP/nats"
  for ((i = 1; i <= n; i++)); do
    pick_ports "NATS_PORT[$i]" "NATS_MON[$i]" "NATS_ROUTE[$i]"
  done
  NATS_URLS=""
  for ((i = 1; i <= n; i++)); do
    write_nats_conf "$i" "$n"
    NATS_URLS+="${NATS_URLS:+,}nats://127.0.0.1:${NATS_PORT[$i]}"
  done
  for ((i = 1; i <= n; i++)); do start_nats_node "$i"; done
  for ((i = 1; i <= n; i++)); do wait_nats_healthy "$i"; done
}

# stop_nats_node I: a clean stop (SIGTERM) by pid, waited for.
stop_nats_node() {
  local i=$1
  kill -TERM "${NATS_PID[$i]}" 2>/dev/null || true
  wait "${NATS_PID[$i]}" 2>/dev/null || true
}

# kill_nats_node I: kill -9 by pid (the fault tests).
kill_nats_node() {
  local i=$1
  kill -KILL "${NATS_PID[$i]}" 2>/dev/null || true
  wait "${NATS_PID[$i]}" 2>/dev/null || true
}

# stop_nats_cluster: every node stopped cleanly.
stop_nats_cluster() {
  local i
  for i in "${!NATS_PID[@]}"; do stop_nats_node "$i"; done
}

# nats_stream_leader STREAM: the server_name of the stream's leader (asked of node 1..N until
# one knows), "" when none.
nats_stream_leader() {
  local s=$1 i l
  for i in "${!NATS_MON[@]}"; do
    kill -0 "${NATS_PID[$i]}" 2>/dev/null || continue
    l=$(curl -s "http://127.0.0.1:${NATS_MON[$i]}/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for a in d.get("account_details") or []:
    for st in a.get("stream_detail") or []:
        if st.get("name") == sys.argv[1] and (st.get("cluster") or {}).get("leader"):
            print(st["cluster"]["leader"]); sys.exit(0)
' "$s")
    [[ -n $l ]] && { echo "$l"; return 0; }
  done
}
