# Process helpers of the bench scripts (bench/run.sh, bench/vs-mosquitto, bench/idle.sh),
# sourced by them: what is left behind at exit, free loopback ports, waiting for a daemon,
# stopping one by its pid, and the PKI and m5-aanf they all start. Messages start with "$BENCH_WHO: "; stop_pid waits
# STOP_WAIT_S seconds (default 5) after SIGTERM.

# bench_cleanup_on_exit DIR...: PIDS (the script adds every pid it starts) empty, and at exit,
# however the script ends (Ctrl-C and SIGTERM exit 130 through it), every pid in PIDS killed
# and DIR... removed.
bench_cleanup_on_exit() {
  PIDS=()
  BENCH_CLEANUP_DIRS=("$@")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "${BENCH_CLEANUP_DIRS[@]}"
}

# pick_port: a loopback TCP port nothing listens on, from 20000..32767.
pick_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 12768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "${BENCH_WHO:-bench}: no free port" >&2
  exit 1
}

# wait_health PORT PID: until http://127.0.0.1:PORT/healthz answers (15 s), or PID is gone.
wait_health() {
  local i
  for ((i = 0; i < 150; i++)); do
    curl -sf --max-time 1 "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# wait_port PORT PID: until 127.0.0.1:PORT accepts a connection (15 s), or PID is gone.
wait_port() {
  local i
  for ((i = 0; i < 150; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# stop_pid PID NAME: SIGTERM, STOP_WAIT_S seconds, then SIGKILL; reaps it.
stop_pid() {
  local i wait_s=${STOP_WAIT_S:-5}
  kill -TERM "$1" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$1" 2>/dev/null; then
    echo "${BENCH_WHO:-bench}: $2 (pid $1) still running $wait_s s after SIGTERM: killed" >&2
    kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}

# start_bench_aanf [COMMAND PREFIX...]: the development PKI in $T/pki and m5-aanf (1 worker) on
# free loopback ports, run under the prefix (e.g. taskset); its pid goes to PIDS. Sets
# AANF_PORT, AANF_MGMT, AANF_PID; exits when it does not become healthy. Needs BIN and T.
start_bench_aanf() {
  timeout 60 "$BIN/m5ctl" pki init --dir "$T/pki" >/dev/null
  AANF_PORT=$(pick_port) AANF_MGMT=$(pick_port)
  cat >"$T/aanf.yaml" <<YAML
listen: {host: 127.0.0.1, port: $AANF_PORT}
mgmt: {host: 127.0.0.1, port: $AANF_MGMT}
tls: {cert: $T/pki/aanf.crt, key: $T/pki/aanf.key, ca: $T/pki/ca.crt}
db: {path: $T/aanf/aanf.db}
workers: 1
log: {level: warn}
YAML
  "$@" "$BIN/m5-aanf" --config "$T/aanf.yaml" >>"$T/aanf.log" 2>&1 &
  AANF_PID=$!
  PIDS+=("$AANF_PID")
  wait_health "$AANF_MGMT" "$AANF_PID" || {
    tail "$T/aanf.log" >&2
    echo "${BENCH_WHO:-bench}: m5-aanf not healthy" >&2
    exit 1
  }
}
