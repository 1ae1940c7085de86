#!/usr/bin/env bash
# The side-by-side benchmark of docs/benchmarks.md: m5s point-to-point (MSGin5G-1, CoAP over
# TLS 1.3 PSK keyed by AKMA with the real m5-aanf) against Mosquitto 2.0 (MQTT QoS 1 over
# TLS-PSK), same pattern, same machine, runs alternated. `make bench` uses it for the group
# fan-out only (--only fan); its point-to-point comparison is bench/vs-mosquitto (fresh stores,
# pinning, rotated order, paced at Mosquitto's half load), this one's is kept to iterate on one
# side (--only m5s-w2).
#
# Usage: bench/run.sh [--quick | --full] [--build DIR] [--pairs N] [--runs R] [--secs S]
#                     [--warm S] [--name NAME] [--no-w1] [--only SYSTEM] [--callgrind] [--out FILE]
#                     [--fan-members N] [--fan-msgs K] [--fan-via group|topic] [--no-fan]
#   --quick (make bench):      50 pairs, 3 runs per system, 2 s warm-up, 10 s windows
#   --full  (make bench-full): 100 pairs, 5 runs per system, 3 s warm-up, 20 s windows
#   each run: warm-up, saturation window, warm-up, window at 50 % of that run's saturation
#   rate, drain. Systems per round: mosquitto, m5s with 2 workers, m5s with 1 worker.
#   --only SYSTEM: run just one of mosquitto, m5s-w2, m5s-w1 (to iterate on one side; a
#   result without its peer is not a comparison).
#   --callgrind: afterwards, instructions per message of m5s (1 worker) under callgrind, and of
#                Mosquitto unless --only names an m5s system.
#   Then the group fan-out (docs/benchmarks.md "Group fan-out"), R rounds of mosquitto and m5s
#   (2 workers): --fan-members (1000) members online, one sender, --fan-msgs (50) messages:
#   the first alone (the time to reach every member), the others back to back (deliveries/s).
#   m5s: bench/m5fan, a GROUP address (--fan-via group, the default) or a Messaging Topic
#   (--fan-via topic); Mosquitto: mqload --fanout, QoS 1 subscribers of one topic. --no-fan
#   skips it; --only fan runs only it.
#   Environment: M5LOAD_ARGS, extra m5load arguments (e.g. --nagle for libm5c's own socket,
#                --dtls for CoAP over DTLS 1.2), the callgrind run's included.
# Raw RESULT lines and the summary (medians, min-max, ratios) go to
# bench/results/<date>-<commit>-<name>[-N].txt (or --out; never overwritten) and stdout.
# Every process is started by this script, tracked by pid and stopped by pid; loopback only.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$REPO/build/release
MODE=quick
PAIRS= RUNS= SECS= WARM= NAME= OUT= W1=1 ONLY= CALLGRIND=0
FAN=1 FAN_N=1000 FAN_K=50 FAN_VIA=group
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
  --fan-members) FAN_N=$2; shift ;;
  --fan-msgs) FAN_K=$2; shift ;;
  --fan-via) FAN_VIA=$2; shift ;;
  --no-fan) FAN=0 ;;
  *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $MODE == full ]]; then
  : "${PAIRS:=100}" "${RUNS:=5}" "${SECS:=20}" "${WARM:=3}" "${NAME:=full}"
else
  : "${PAIRS:=50}" "${RUNS:=3}" "${SECS:=10}" "${WARM:=2}" "${NAME:=quick}"
fi
[[ $FAN_VIA == group || $FAN_VIA == topic ]] || { echo "bench: --fan-via group|topic" >&2; exit 2; }
((FAN_K >= 2 && FAN_N >= 1)) || { echo "bench: --fan-msgs needs 2 or more, --fan-members 1 or more" >&2; exit 2; }
[[ $ONLY == fan ]] && FAN=1
BUILD=$(cd "$BUILD" && pwd)
BIN=$BUILD/bin

# ---- dependencies (the bench's own: not make test's) ----
for b in m5-aanf m5s m5ctl m5load m5fan; do
  [[ -x $BIN/$b ]] || { echo "bench: $BIN/$b missing (make bench builds it)" >&2; exit 1; }
done
command -v mosquitto >/dev/null || { echo "bench: mosquitto missing: apt-get install mosquitto" >&2; exit 1; }
[[ -x $BIN/mqload ]] || { echo "bench: $BIN/mqload missing (make bench builds it)" >&2; exit 1; }
if ((CALLGRIND)) && ! command -v valgrind >/dev/null; then
  echo "bench: --callgrind needs valgrind (apt-get install valgrind)" >&2
  exit 1
fi

BENCH_WHO=bench STOP_WAIT_S=5
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/proc.sh"
T=$(mktemp -d /tmp/m5bench.XXXXXX)
bench_cleanup_on_exit "$T"

# ---- the m5 side: PKI, m5-aanf (up for the whole bench), provisioning ----
start_bench_aanf

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
FAN_NAME=bench.fan
if ((FAN)); then
  echo "bench: provisioning $FAN_N fan-out members and their sender (m5ctl subscriber import)" >&2
  "$BIN/m5fan" --print-subscribers --members "$FAN_N" >"$T/fansubs.txt"
  timeout 300 "$BIN/m5ctl" subscriber import "$T/fansubs.txt" --aanf "https://localhost:$AANF_PORT" \
    --m5s-admin "http://127.0.0.1:$M5S_MGMT" --admin-token "$T/m5s/admin.token" --pki "$T/pki" \
    >"$T/import.out" 2>&1 || { cat "$T/import.out" >&2; echo "bench: provisioning the fan-out members failed" >&2; exit 1; }
  if [[ $FAN_VIA == group ]]; then
    # the group: every member and the sender (a member may send to its group), 500 a request
    admin() { curl -s --max-time 30 -H "authorization: Bearer $(<"$T/m5s/admin.token")" "$@"; }
    st=$(admin -o "$T/grp.json" -w '%{http_code}' -X PUT "http://127.0.0.1:$M5S_MGMT/admin/v1/groups/$FAN_NAME")
    [[ $st == 20? ]] || { echo "bench: PUT group: $st $(cat "$T/grp.json")" >&2; exit 1; }
    python3 -c 'import json, sys
ids = [l.split()[2] for l in open(sys.argv[1]) if l.strip()]
for k in range(0, len(ids), 500):
    open("%s.%05d.json" % (sys.argv[2], k), "w").write(json.dumps(["ue:" + i for i in ids[k:k + 500]]))' \
      "$T/fansubs.txt" "$T/fanbatch"
    for b in "$T"/fanbatch.*.json; do
      st=$(admin -o "$T/grp.json" -w '%{http_code}' -X POST -H 'content-type: application/json' \
        --data-binary "@$b" "http://127.0.0.1:$M5S_MGMT/admin/v1/groups/$FAN_NAME/members")
      [[ $st == 200 ]] || { echo "bench: POST group members: $st $(cat "$T/grp.json")" >&2; exit 1; }
    done
  fi
fi
stop_pid "$SRV_PID" m5s

# ---- the Mosquitto side ----
MQ_PORT=$(pick_port)
"$BIN/mqload" --print-psk --pairs "$PAIRS" >"$T/psk.txt"
((FAN)) && "$BIN/mqload" --print-psk --fanout "$FAN_N" >>"$T/psk.txt"
chmod 600 "$T/psk.txt"
{
  echo "per_listener_settings false"
  echo "allow_anonymous true"
  # as bench/vs-mosquitto: persistence on (a fresh store per run), m5s's TLS 1.3 suite
  echo "persistence true"
  echo "persistence_location $T/mqstore/"
  echo "autosave_interval 1"
  echo "log_dest stderr"
  echo "log_type error"
  echo "log_type warning"
  [[ $(id -u) -eq 0 ]] && echo "user root"
  echo "set_tcp_nodelay true"
  echo "listener $MQ_PORT 127.0.0.1"
  echo "psk_hint bench"
  echo "psk_file $T/psk.txt"
  echo "use_identity_as_username false"
  echo "ciphers_tls1.3 TLS_AES_128_GCM_SHA256"
} >"$T/mosquitto.conf"
start_mosquitto() { # [wrapper...]: on a fresh store
  rm -rf "$T/mqstore"
  mkdir -p "$T/mqstore"
  "$@" mosquitto -c "$T/mosquitto.conf" >>"$T/mosquitto.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
}

# ---- runs ----
RAW=$T/raw.txt
: >"$RAW"
GEN_ARGS=(--pairs "$PAIRS" --window 20 --warm "$WARM" --secs "$SECS" --half 0.5 --drain 5)
GEN_TIMEOUT=$((60 + 2 * (${WARM%.*} + ${SECS%.*}) + 10))

run_one() { # SYSTEM RUN
  local sys=$1 run=$2 rc=0 out=$T/gen.out
  case $sys in
  mosquitto)
    start_mosquitto
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
[[ $ONLY == fan ]] && SYSTEMS=()
START=$(date +%s)
for ((r = 1; r <= RUNS; r++)); do
  for sys in "${SYSTEMS[@]}"; do run_one "$sys" "$r"; done
done
ELAPSED=$(($(date +%s) - START))

# ---- group fan-out: mosquitto and m5s (2 workers), alternated ----
FAN_FAILED=
fan_one() { # SYSTEM RUN
  local sys=$1 run=$2 rc=0 out=$T/fan.out dest=group:$FAN_NAME extra=()
  [[ $FAN_VIA == topic ]] && dest=topic:$FAN_NAME extra=(--topic "$FAN_NAME")
  case $sys in
  mosquitto)
    start_mosquitto
    wait_port "$MQ_PORT" "$SRV_PID" || { tail "$T/mosquitto.log" >&2; echo "bench: mosquitto did not start" >&2; exit 1; }
    timeout 240 "$BIN/mqload" --port "$MQ_PORT" --server-pid "$SRV_PID" --label mosquitto \
      --fanout "$FAN_N" --msgs "$FAN_K" --quiet 0.5 >"$out" 2>"$T/gen.err" || rc=$?
    ;;
  m5s-w2)
    start_m5s 2
    timeout 240 "$BIN/m5fan" --port "$M5S_PORT" --server-pid "$SRV_PID" --label m5s-w2 \
      --members "$FAN_N" "${extra[@]}" --send "$FAN_K" --to "$dest" --one-first --quiet 0.5 \
      --timeout 200 >"$out" 2>"$T/gen.err" || rc=$?
    ;;
  esac
  stop_pid "$SRV_PID" "$sys"
  if ((rc)) || ! grep -q '^RESULT ' "$out"; then
    echo "bench: fan-out $sys run $run failed (generator exit $rc):" >&2
    grep -v '^m5fan: [0-9]* s:' "$T/gen.err" | tail -n 8 >&2
    if [[ $sys == m5s-w2 && $FAN_VIA == group ]] && grep -q NOT_AUTHORIZED "$T/gen.err"; then
      echo "bench: this m5s refuses group messages (no group fan-out yet): --fan-via topic" \
        "measures the same fan-out through a Messaging Topic" >&2
    fi
    echo "# fan-out: $sys run $run failed (generator exit $rc)" >>"$RAW"
    FAN_FAILED=1
    return 0
  fi
  sed "s/^RESULT /RESULT run=$run phase=fan /" "$out" >>"$RAW"
  awk -v s="$sys" -v r="$run" '/^RESULT/ {for(i=1;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]}
    printf "bench: fan-out %-9s run %d: %s deliveries/s, one message reaches all %s members in %s ms, server %s us/delivery, dup %s missing %s\n",
      s, r, v["deliveries_per_s"], v["members"], v["reach_one_ms"], v["srv_us_per_delivery"], v["duplicates"], v["missing"]}' "$out" >&2
}
FAN_START=$(date +%s)
if ((FAN)); then
  echo "bench: group fan-out, $FAN_N members, $FAN_K messages, m5s via $FAN_VIA" >&2
  for ((r = 1; r <= RUNS; r++)); do
    for sys in mosquitto m5s-w2; do fan_one "$sys" "$r"; done
  done
fi
FAN_ELAPSED=$(($(date +%s) - FAN_START))

# ---- optional: callgrind instructions per message (m5s, 1 worker) ----
CG_LINES=()
if ((CALLGRIND)); then
  cg_run() { # SYSTEM SECS -> "instructions delivered"
    local sys=$1 secs=$2 f=$T/cg.out gen
    rm -f "$f"
    local vg=(valgrind --tool=callgrind --callgrind-out-file="$f" --dump-instr=no)
    if [[ $sys == m5s ]]; then
      start_m5s 1 "${vg[@]}"
      gen=(m5load --port "$M5S_PORT" ${M5LOAD_ARGS:-})
    else
      start_mosquitto "${vg[@]}"
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
  CG_SYSTEMS=(m5s mosquitto)
  [[ $ONLY == m5s-* ]] && CG_SYSTEMS=(m5s) # one side iterated on: its count only
  for sys in "${CG_SYSTEMS[@]}"; do
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
if [[ -z $OUT ]]; then # named by date and commit, never overwritten
  base=$REPO/bench/results/$DATE-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo nogit)-$NAME
  OUT=$base.txt k=1
  while [[ -e $OUT ]]; do k=$((k + 1)); OUT=$base-$k.txt; done
fi
{
  echo "# bench/run.sh --$MODE${ONLY:+ --only $ONLY}: $(date -u +%FT%TZ), $ELAPSED s of point-to-point runs"
  echo "# machine: nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
    "kernel $(uname -r), $(openssl version | cut -d' ' -f1-2), $(mosquitto -h 2>/dev/null | head -n 1)," \
    "$(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release)"
  echo "# git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' (with local changes)')"
  ((${#SYSTEMS[@]})) && echo "# pattern: $PAIRS pairs, 64-byte payload, 20 in flight end to end per pair, warm-up $WARM s," \
    "windows $SECS s (saturation, then 50 % of it), $RUNS runs per system, alternated"
  echo "# m5s: ${M5LOAD_ARGS:+m5load $M5LOAD_ARGS (the TLS line names the protocol and suite), }TLS 1.3 PSK (AKMA), log warn, databases under /tmp; mosquitto: TLS 1.3 PSK (TLS_AES_128_GCM_SHA256), QoS 1, persistence true, autosave_interval 1, fresh store per run"
  ((FAN)) && echo "# fan-out: $FAN_N members online, one sender, $FAN_K messages (the first alone, then a burst" \
    "of $((FAN_K - 1)), at most 20 unanswered), m5s via a $FAN_VIA with stoAndFwInd, 2 workers; mosquitto: QoS 1" \
    "subscribers of one topic; $RUNS runs per system, alternated, $FAN_ELAPSED s"
  cat "$RAW"
  echo
  python3 "$REPO/bench/summarize.py" "$RAW"
} >"$OUT"
python3 "$REPO/bench/summarize.py" "$RAW"
for l in "${CG_LINES[@]}"; do echo "$l"; done
echo "bench: raw results and summary in ${OUT#"$REPO"/}"
if [[ -n $FAN_FAILED ]]; then
  echo "bench: a fan-out run failed (see above and the results file)" >&2
  exit 1
fi
