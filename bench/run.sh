#!/usr/bin/env bash
# The side-by-side benchmark of docs/benchmarks.md: m5s point-to-point (MSGin5G-1, CoAP over
# TLS 1.3 PSK keyed by AKMA with the real m5-aanf) against Mosquitto 2.0 (MQTT QoS 1 over
# TLS-PSK), same pattern, same machine, runs alternated.
#
# Usage: bench/run.sh [--quick | --full] [--build DIR] [--pairs N] [--runs R] [--secs S]
#                     [--warm S] [--name NAME] [--no-w1] [--only SYSTEM] [--callgrind] [--out FILE]
#   --quick (make bench):      50 pairs, 3 runs per system, 2 s warm-up, 10 s windows
#   --full  (make bench-full): 100 pairs, 5 runs per system, 3 s warm-up, 20 s windows
#   each run: warm-up, saturation window, warm-up, window at 50 % of that run's saturation
#   rate, drain. Systems per round: mosquitto, m5s with 2 workers, m5s with 1 worker.
#   --only SYSTEM: run just one of mosquitto, m5s-w2, m5s-w1 (to iterate on one side; a
#   result without its peer is not a comparison).
#   --callgrind: afterwards, instructions per message of m5s (1 worker) under callgrind.
#   Environment: M5LOAD_ARGS, extra m5load arguments (e.g. --nagle for libm5c's own socket).
# Raw RESULT lines and the summary (medians, min-max, ratios) go to
# bench/results/<date>-<name>.txt (or --out) and stdout.
# Every process is started by this script, tracked by pid and stopped by pid; loopback only.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$REPO/build/release
MODE=quick
PAIRS= RUNS= SECS= WARM= NAME= OUT= W1=1 ONLY= CALLGRIND=0
while (($#)); do
  case $1 in
  --quick) MODE=quick ;;
  --full) MODE=full ;;
  --build) BUILD=$2; shift ;;
  --pairs) PAIRS=$2; shift ;;
  --runs) RUNS=$2; shift ;;
  --secs) SECS=$2; shift ;;
  --warm) WARM=$2; shift ;;
  --name) NAME=$2; shift ;;
  --out) OUT=$2; shift ;;
  --no-w1) W1=0 ;;
  --only) ONLY=$2; shift ;;
  --callgrind) CALLGRIND=1 ;;
  *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $MODE == full ]]; then
  : "${PAIRS:=100}" "${RUNS:=5}" "${SECS:=20}" "${WARM:=3}" "${NAME:=full}"
else
  : "${PAIRS:=50}" "${RUNS:=3}" "${SECS:=10}" "${WARM:=2}" "${NAME:=quick}"
fi
BUILD=$(cd "$BUILD" && pwd)
BIN=$BUILD/bin

# ---- dependencies (the bench's own: not make test's) ----
for b in m5-aanf m5s m5ctl m5load; do
  [[ -x $BIN/$b ]] || { echo "bench: $BIN/$b missing (make bench builds it)" >&2; exit 1; }
done
command -v mosquitto >/dev/null || { echo "bench: mosquitto missing: apt-get install mosquitto" >&2; exit 1; }
[[ -x $BIN/mqload ]] || { echo "bench: $BIN/mqload missing (needs libmosquitto-dev)" >&2; exit 1; }
if ((CALLGRIND)) && ! command -v valgrind >/dev/null; then
  echo "bench: --callgrind needs valgrind (apt-get install valgrind)" >&2
  exit 1
fi

T=$(mktemp -d /tmp/m5bench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 12768))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "bench: no free port" >&2
  exit 1
}

wait_health() { # PORT PID
  local i
  for ((i = 0; i < 100; i++)); do
    curl -sf --max-time 1 "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

wait_port() { # PORT PID
  local i
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop_pid() { # PID NAME: SIGTERM, 5 s, then SIGKILL
  local i
  kill -TERM "$1" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$1" 2>/dev/null; then
    echo "bench: $2 (pid $1) still running 5 s after SIGTERM: killed" >&2
    kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}

# ---- the m5 side: PKI, m5-aanf (up for the whole bench), provisioning ----
timeout 60 "$BIN/m5ctl" pki init --dir "$T/pki" >/dev/null
AANF_PORT=$(pick_port) AANF_MGMT=$(pick_port)
cat >"$T/aanf.yaml" <<EOF
listen: {host: 127.0.0.1, port: $AANF_PORT}
mgmt: {host: 127.0.0.1, port: $AANF_MGMT}
tls: {cert: $T/pki/aanf.crt, key: $T/pki/aanf.key, ca: $T/pki/ca.crt}
db: {path: $T/aanf/aanf.db}
workers: 1
log: {level: warn}
EOF
"$BIN/m5-aanf" --config "$T/aanf.yaml" >>"$T/aanf.log" 2>&1 &
AANF_PID=$!
PIDS+=("$AANF_PID")
wait_health "$AANF_MGMT" "$AANF_PID" || { tail "$T/aanf.log" >&2; echo "bench: m5-aanf not healthy" >&2; exit 1; }

M5S_PORT=$(pick_port) M5S_MGMT=$(pick_port) M5S_NORTH=$(pick_port)
m5s_config() { # WORKERS
  cat >"$T/m5s.yaml" <<EOF
ue: {host: 127.0.0.1, port: $M5S_PORT}
mgmt: {host: 127.0.0.1, port: $M5S_MGMT, token_file: $T/m5s/admin.token}
north: {host: 127.0.0.1, port: $M5S_NORTH}
oauth: {key: $T/pki/m5s-token.key}
aanf: {url: https://localhost:$AANF_PORT}
tls: {cert: $T/pki/m5s.crt, key: $T/pki/m5s.key, ca: $T/pki/ca.crt}
server: {fqdns: [localhost]}
db: {path: $T/m5s/m5s.db}
workers: $1
log: {level: warn}
EOF
}
SRV_PID=
start_m5s() { # WORKERS [wrapper...]
  local w=$1
  shift
  m5s_config "$w"
  "$@" "$BIN/m5s" --config "$T/m5s.yaml" >>"$T/m5s.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  wait_health "$M5S_MGMT" "$SRV_PID" || { tail "$T/m5s.log" >&2; echo "bench: m5s not healthy" >&2; exit 1; }
}

echo "bench: provisioning $((2 * PAIRS)) subscribers (m5ctl subscriber add --ue-svc-id)" >&2
start_m5s 2
"$BIN/m5load" --print-subscribers --pairs "$PAIRS" >"$T/subs.txt"
export BIN T AANF_PORT M5S_MGMT
xargs -P 4 -L 1 bash -c 'out=$("$BIN/m5ctl" subscriber add --ue-svc-id "$0" --supi "$1" \
  --kausf "$2" --aanf "https://localhost:$AANF_PORT" --m5s-admin "http://127.0.0.1:$M5S_MGMT" \
  --admin-token "$T/m5s/admin.token" --pki "$T/pki" 2>&1) || { echo "bench: provisioning $0: $out" >&2; exit 255; }' <"$T/subs.txt"
stop_pid "$SRV_PID" m5s

# ---- the Mosquitto side ----
MQ_PORT=$(pick_port)
"$BIN/mqload" --print-psk --pairs "$PAIRS" >"$T/psk.txt"
chmod 600 "$T/psk.txt"
{
  echo "per_listener_settings false"
  echo "allow_anonymous true"
  echo "persistence false"
  echo "log_dest stderr"
  echo "log_type error"
  echo "log_type warning"
  [[ $(id -u) -eq 0 ]] && echo "user root"
  echo "set_tcp_nodelay true"
  echo "listener $MQ_PORT 127.0.0.1"
  echo "psk_hint bench"
  echo "psk_file $T/psk.txt"
  echo "use_identity_as_username false"
} >"$T/mosquitto.conf"

# ---- runs ----
RAW=$T/raw.txt
: >"$RAW"
GEN_ARGS=(--pairs "$PAIRS" --window 20 --warm "$WARM" --secs "$SECS" --half 0.5 --drain 5)
GEN_TIMEOUT=$((60 + 2 * (${WARM%.*} + ${SECS%.*}) + 10))

run_one() { # SYSTEM RUN
  local sys=$1 run=$2 rc=0 out=$T/gen.out
  case $sys in
  mosquitto)
    mosquitto -c "$T/mosquitto.conf" >>"$T/mosquitto.log" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    wait_port "$MQ_PORT" "$SRV_PID" || { tail "$T/mosquitto.log" >&2; echo "bench: mosquitto did not start" >&2; exit 1; }
    timeout "$GEN_TIMEOUT" "$BIN/mqload" --port "$MQ_PORT" --server-pid "$SRV_PID" \
      --label mosquitto "${GEN_ARGS[@]}" >"$out" 2>"$T/gen.err" || rc=$?
    ;;
  m5s-w*)
    start_m5s "${sys#m5s-w}"
    timeout "$GEN_TIMEOUT" "$BIN/m5load" --port "$M5S_PORT" --server-pid "$SRV_PID" \
      --label "$sys" "${GEN_ARGS[@]}" ${M5LOAD_ARGS:-} >"$out" 2>"$T/gen.err" || rc=$?
    ;;
  esac
  stop_pid "$SRV_PID" "$sys"
  if ((rc)) || ! grep -q 'phase=total' "$out"; then
    echo "bench: $sys run $run failed (generator exit $rc):" >&2
    tail -n 20 "$T/gen.err" >&2
    [[ $sys == mosquitto ]] && tail -n 10 "$T/mosquitto.log" >&2
    [[ $sys == m5s-* ]] && tail -n 10 "$T/m5s.log" >&2
    exit 1
  fi
  sed "s/^RESULT /RESULT run=$run /" "$out" >>"$RAW"
  grep -v '^RESULT' "$T/gen.err" | sed "s/^/# $sys run $run: /" | head -n 5 >>"$RAW" || true
  awk -v s="$sys" -v r="$run" '/phase=sat/ {for(i=1;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]}
    printf "bench: %-9s run %d: %s msg/s, server CPU %s %%, %s us/msg, p99 %s us; ", s, r, v["rate"], v["srv_cpu_pct"], v["srv_us_per_msg"], v["p99_us"]}
    /phase=half/ {for(i=1;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]} printf "at %s msg/s p50/p99/p99.9 %s/%s/%s us; ", v["rate"], v["p50_us"], v["p99_us"], v["p999_us"]}
    /phase=total/ {for(i=1;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]} printf "lost %s dup %s failed %s\n", v["lost"], v["dup"], v["failed"]}' "$out" >&2
}

SYSTEMS=(mosquitto m5s-w2)
((W1)) && SYSTEMS+=(m5s-w1)
[[ -n $ONLY ]] && SYSTEMS=("$ONLY")
START=$(date +%s)
for ((r = 1; r <= RUNS; r++)); do
  for sys in "${SYSTEMS[@]}"; do run_one "$sys" "$r"; done
done
ELAPSED=$(($(date +%s) - START))

# ---- optional: callgrind instructions per message (m5s, 1 worker) ----
CG_LINES=()
if ((CALLGRIND)); then
  cg_run() { # SYSTEM SECS -> "instructions delivered"
    local sys=$1 secs=$2 f=$T/cg.out gen
    rm -f "$f"
    local vg=(valgrind --tool=callgrind --callgrind-out-file="$f" --dump-instr=no)
    if [[ $sys == m5s ]]; then
      start_m5s 1 "${vg[@]}"
      gen=(m5load --port "$M5S_PORT")
    else
      "${vg[@]}" mosquitto -c "$T/mosquitto.conf" >>"$T/mosquitto.log" 2>&1 &
      SRV_PID=$!
      PIDS+=("$SRV_PID")
      wait_port "$MQ_PORT" "$SRV_PID" || { echo "bench: mosquitto (callgrind) did not start" >&2; exit 1; }
      gen=(mqload --port "$MQ_PORT")
    fi
    timeout 300 "$BIN/${gen[0]}" "${gen[@]:1}" --pairs 10 --window 20 --warm 0 --secs "$secs" \
      --half 0 --drain 10 --label callgrind >"$T/cg.gen" 2>>"$T/gen.err" || true
    stop_pid "$SRV_PID" "$sys (callgrind)"
    local ir del
    ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f" | head -n 1)
    del=$(sed -n 's/.*phase=total.* delivered=\([0-9]*\).*/\1/p' "$T/cg.gen")
    echo "${ir:-0} ${del:-0}"
  }
  for sys in m5s mosquitto; do
    echo "bench: callgrind ($sys, 1 thread/worker, 10 pairs): a 1 s and a 10 s run, differenced" >&2
    read -r I0 M0 < <(cg_run "$sys" 1)
    read -r I1 M1 < <(cg_run "$sys" 10)
    if ((M1 > M0 && I1 > I0)); then
      CG_LINES+=("CALLGRIND system=$sys pairs=10 instr_short=$I0 msgs_short=$M0 instr_long=$I1 msgs_long=$M1 instr_per_msg=$(((I1 - I0) / (M1 - M0)))")
    else
      CG_LINES+=("CALLGRIND system=$sys failed: short $I0/$M0 long $I1/$M1")
    fi
    echo "${CG_LINES[-1]}" >>"$RAW"
  done
fi

stop_pid "$AANF_PID" m5-aanf

# ---- report ----
DATE=$(date -u +%Y-%m-%d)
mkdir -p "$REPO/bench/results"
OUT=${OUT:-$REPO/bench/results/$DATE-$NAME.txt}
{
  echo "# bench/run.sh --$MODE: $(date -u +%FT%TZ), $ELAPSED s of runs"
  echo "# machine: nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
    "kernel $(uname -r), $(openssl version | cut -d' ' -f1-2), $(mosquitto -h 2>/dev/null | head -n 1)," \
    "$(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release)"
  echo "# git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "# pattern: $PAIRS pairs, 64-byte payload, 20 in flight end to end per pair, warm-up $WARM s," \
    "windows $SECS s (saturation, then 50 % of it), $RUNS runs per system, alternated"
  echo "# m5s: TLS 1.3 PSK (AKMA), log warn, databases under /tmp; mosquitto: TLS-PSK, QoS 1, persistence off"
  cat "$RAW"
  echo
  python3 "$REPO/bench/summarize.py" "$RAW"
} >"$OUT"
python3 "$REPO/bench/summarize.py" "$RAW"
for l in "${CG_LINES[@]}"; do echo "$l"; done
echo "bench: raw results and summary in ${OUT#"$REPO"/}"
