# shellcheck shell=bash
# The parts `make run` (tools/run-dev.sh) and `make run-cluster` (tools/run-cluster.sh) share,
# sourced by both: the demo subscribers, port checks, starting daemons in sessions of their
# own with a pid file each, waiting for /healthz, and stopping them by pid in the reverse
# order of their start. The sourcing script sets, before calling these:
#   RUN_NAME  the prefix of every message ("run-dev", "run-cluster")
#   PID_DIR   where NAME.pid goes (relative to the run directory, e.g. var/run)
#   BIN       the directory holding the built daemons
#   RUN_WHAT  what writes the demo configs, for their comment (e.g. '`make run` (tools/run-dev.sh)')
#   RUN_DIR, CALLER_DIR  the run directory (the daemons' working directory), the caller's
# and may set EXE_OF[NAME] (the program of a daemon named otherwise, e.g. nats-1 ->
# nats-server; default $BIN/NAME) and STOP_SIG[NAME] (default TERM).

# Started in the background by a non-interactive shell, we inherit SIGINT ignored, and bash
# cannot trap a signal ignored on entry: start again with SIGINT at its default (once).
# (run_reexec_sigint "$0" "$@", before anything else.)
run_reexec_sigint() {
  local sig_ignored
  sig_ignored=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status 2>/dev/null) || true
  if [[ -z ${M5_RUN_DEV_SIGINT:-} && ${sig_ignored:-0} =~ ^[0-9a-fA-F]+$ ]] &&
    ((16#$sig_ignored & 2)); then
    export M5_RUN_DEV_SIGINT=1
    exec env --default-signal=INT "$@"
  fi
}

# shellcheck disable=SC2034 # used by the sourcing scripts
# The demo subscribers. These SUPIs and K_AUSF values are DEMO VALUES, published in this
# file: never use them for anything but a local development system.
DEMO_UES=(ue1 ue2)
# shellcheck disable=SC2034
declare -A DEMO_SUPI=([ue1]=001010000000001 [ue2]=001010000000002)
declare -A DEMO_KAUSF=(
  [ue1]=d0e0000000000000000000000000000000000000000000000000000000000001
  [ue2]=d0e0000000000000000000000000000000000000000000000000000000000002
)
# ue1 talks CoAP over TLS (coaps+tcp), ue2 CoAP over DTLS (coaps): both transports are shown.
# shellcheck disable=SC2034
declare -A DEMO_SCHEME=([ue1]=coaps+tcp [ue2]=coaps)

declare -A EXE_OF=()
declare -A STOP_SIG=()
declare -A LOG_OF=()
declare -A PID_OF=()
STARTED=() # daemon names in the order of their start (stopped in the reverse order)

# run_check_bin NAMES...: each BIN/NAME is built.
run_check_bin() {
  local b
  for b in "$@"; do
    [[ -x $BIN/$b ]] || { echo "$RUN_NAME: $BIN/$b is missing; build first (make build)" >&2; exit 1; }
  done
}

# port_var NAME DEFAULT: the port from the environment variable NAME, checked.
port_var() {
  local v=${!1:-$2}
  if ! [[ $v =~ ^[0-9]{1,5}$ ]] || ((10#$v < 1 || 10#$v > 65535)); then
    echo "$RUN_NAME: $1='$v' is not a port number (1..65535)" >&2
    exit 2
  fi
  echo "$((10#$v))"
}

# disp PATH: PATH as the caller would type it: relative to the caller's directory when inside.
disp() {
  local p=$1
  [[ $p == "$CALLER_DIR"/* ]] && p=${p#"$CALLER_DIR"/}
  printf '%q' "$p"
}

# run_check_ports: PORT_OF maps the names of the port variables to their ports: two equal
# ports, or one another process listens on (it would answer our health checks), refuse to
# start, naming the variable. PORT_TAKEN_HINT[VAR], when set, is said instead of the default.
declare -A PORT_OF=()
declare -A PORT_TAKEN_HINT=()
run_check_ports() {
  local v w p
  for v in "${!PORT_OF[@]}"; do
    p=${PORT_OF[$v]}
    for w in "${!PORT_OF[@]}"; do
      if [[ $w != "$v" && ${PORT_OF[$w]} == "$p" ]]; then
        echo "$RUN_NAME: $v and $w are both port $p; give them different ports" >&2
        exit 2
      fi
    done
  done
  for v in $(printf '%s\n' "${!PORT_OF[@]}" | sort); do
    p=${PORT_OF[$v]}
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      if [[ -n ${PORT_TAKEN_HINT[$v]:-} ]]; then
        echo "$RUN_NAME: ${PORT_TAKEN_HINT[$v]}" >&2
      else
        echo "$RUN_NAME: 127.0.0.1:$p/tcp ($v) is already in use (another make run or make" \
          "run-cluster?); stop it, or choose another port with $v" >&2
      fi
      exit 1
    fi
  done
}

# run_exe NAME: the program of the daemon NAME.
run_exe() { echo "${EXE_OF[$1]:-$BIN/$1}"; }

# run_check_not_running NAMES...: a previous run still alive would make the daemons fail on
# their ports: say so; stale pid files are removed.
run_check_not_running() {
  local d p exe
  for d in "$@"; do
    [[ -f $PID_DIR/$d.pid ]] || continue
    p=$(<"$PID_DIR/$d.pid")
    exe=$(run_exe "$d")
    if [[ $p =~ ^[0-9]+$ ]] && kill -0 "$p" 2>/dev/null &&
      [[ $(readlink "/proc/$p/exe" 2>/dev/null) == */"${exe##*/}" ]]; then
      echo "$RUN_NAME: $d is already running (pid $p, $RUN_DIR/$PID_DIR/$d.pid); stop that" \
        "run first" >&2
      exit 1
    fi
    rm -f "$PID_DIR/$d.pid"
  done
}

# stop_one NAME PID: STOP_SIG[NAME] (default SIGTERM), then waits (bounded: 5 s, then
# SIGKILL); prints and returns the daemon's exit status (non-zero also when it had to be
# killed).
stop_one() {
  local name=$1 pid=$2 sig=${STOP_SIG[$1]:-TERM} i rc=0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$RUN_NAME: $name (pid $pid) did not exit within 5 s of SIG$sig; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rc=1
  else
    wait "$pid" 2>/dev/null || rc=$?
  fi
  rm -f "$PID_DIR/$name.pid"
  echo "$RUN_NAME: $name stopped (exit $rc)"
  return "$rc"
}

# stop_all: every daemon still running, in the reverse order of their start. Returns 0 when
# all exited 0; prints the log tail of one that did not.
stop_all() {
  local rc=0 i name
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    name=${STARTED[$i]}
    [[ -n ${PID_OF[$name]:-} ]] || continue
    stop_one "$name" "${PID_OF[$name]}" || { rc=1; tail -n 30 "${LOG_OF[$name]}" >&2 || true; }
    PID_OF[$name]=
  done
  return "$rc"
}

# shellcheck disable=SC2317 # run by the trap
on_signal() {
  trap - INT TERM HUP
  local rc=0
  stop_all || rc=1
  exit "$rc"
}

# failed WHY LOG: the tail of that daemon's log, then every daemon stopped and exit 1.
failed() {
  trap - INT TERM HUP
  echo "$RUN_NAME: $1; the end of its log ($RUN_DIR/$2):" >&2
  tail -n 40 "$2" >&2 || true
  stop_all >/dev/null 2>&1 || true
  exit 1
}

# start NAME LOG ARGS...: the daemon (run_exe NAME) in its own session (so a Ctrl-C in the
# terminal reaches only this script, which stops the daemons in order); its pid (the daemon's
# own: setsid execs it) in PID_DIR/NAME.pid. Sets STARTED_PID, and LOG_MARK: the log's size
# before this start (what this run wrote follows).
start() {
  local name=$1 log=$2 exe
  shift 2
  exe=$(run_exe "$name")
  printf '\n--- %s: %s starts %s\n' "$(date -u +%FT%TZ)" "$RUN_NAME" "$name" >>"$log"
  LOG_MARK=$(stat -c %s "$log")
  setsid "$exe" "$@" </dev/null >>"$log" 2>&1 &
  STARTED_PID=$!
  echo "$STARTED_PID" >"$PID_DIR/$name.pid"
  STARTED+=("$name")
  PID_OF[$name]=$STARTED_PID
  LOG_OF[$name]=$log
}

# wait_healthy NAME PID PORT LOG [SECONDS]: until http://127.0.0.1:PORT/healthz answers 200
# (default 10 s).
wait_healthy() {
  local name=$1 pid=$2 port=$3 log=$4 secs=${5:-10} i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || failed "$name exited during start-up" "$log"
    if curl -sf --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
      kill -0 "$pid" 2>/dev/null || failed "$name exited during start-up" "$log"
      return 0
    fi
    sleep 0.1
  done
  failed "$name not healthy on http://127.0.0.1:$port/healthz after $secs s" "$log"
}

# since_start LOG REGEX: whether the log has a matching line written since the last start().
since_start() { tail -c "+$((LOG_MARK + 1))" "$1" 2>/dev/null | grep -q -- "$2"; }

# run_pki: the development PKI in var/pki: made on the first run; later runs add what a newer
# m5ctl makes (e.g. the token signing key) and keep everything that exists.
run_pki() { "$BIN/m5ctl" pki init --dir var/pki >/dev/null; }

# provision_demo_ue UE AANF_URL M5S_ADMIN SERVER_URI CFG LOG_FOR_FAILURE: the demo subscriber
# UE at the AAnF and its binding in m5s (again on every run: the AAnF replaces the context,
# m5s answers the binding with 200 when it exists), and its m5c config CFG (mode 0600) for
# SERVER_URI.
provision_demo_ue() {
  local ue=$1 aanf_url=$2 admin=$3 server=$4 cfg=$5 log=$6 out
  if ! out=$("$BIN/m5ctl" subscriber add --supi "${DEMO_SUPI[$ue]}" --kausf "${DEMO_KAUSF[$ue]}" \
    --ue-svc-id "$ue" --aanf "$aanf_url" --m5s-admin "$admin" --pki var/pki \
    --admin-token var/m5s/admin.token 2>&1); then
    echo "$RUN_NAME: provisioning the demo subscriber $ue failed: $out" >&2
    failed "provisioning $ue failed" "$log"
  fi
  rm -f "$cfg.tmp"
  cat >"$cfg.tmp" <<EOF
# m5c configuration of the demo UE $ue, written by $RUN_WHAT on every run.
# The SUPI and K_AUSF are demo values: this file holds a key, so it is mode 0600.
server: $server
af-fqdn: localhost
ue-svc-id: $ue
supi: "${DEMO_SUPI[$ue]}"
kausf: "${DEMO_KAUSF[$ue]}"
EOF
  chmod 600 "$cfg.tmp"
  mv -f "$cfg.tmp" "$cfg"
}

# run_wait_all: waits; a signal interrupts `wait` and runs on_signal; a daemon that exits is a
# failure (its log tail, the others stopped, exit 1). (wait -n -p: bash 5.1.)
run_wait_all() {
  local done_pid='' rc name n pids=()
  for n in "${STARTED[@]}"; do [[ -z ${PID_OF[$n]:-} ]] || pids+=("${PID_OF[$n]}"); done
  set +e
  wait -n -p done_pid "${pids[@]}"
  rc=$?
  set -e
  name=
  for n in "${STARTED[@]}"; do [[ ${PID_OF[$n]:-} != "$done_pid" ]] || name=$n; done
  [[ -n $name ]] || failed "a daemon exited unexpectedly (status $rc)" /dev/null
  PID_OF[$name]=
  rm -f "$PID_DIR/$name.pid"
  failed "$name exited unexpectedly (status $rc)" "${LOG_OF[$name]}"
}
