#!/usr/bin/env bash
# The scale-out benchmark (issue 13; docs/benchmarks.md "Scale-out on JetStream"): the
# point-to-point run of bench/run.sh (m5load: N pairs of UEs, CoAP over TLS 1.3 keyed by AKMA
# with the real m5-aanf, a window of 20 messages per sender) against three set-ups in turn:
#   sqlite  one m5s (2 workers) on its SQLite store: the reference
#   js1     one m5s (2 workers) on JetStream: one nats-server, store.js.replicas 1
#   js3x2   two m5s nodes (2 workers each) on three clustered nats-servers, replicas 3; the
#           senders on node A, the receivers on node B (m5load --recv-port), so every message
#           is accepted by one node and delivered by the other
# Each set-up: fresh stores, its daemons started, the 2N subscribers provisioned (through node
# A), R rounds of m5load (warm-up, saturation window, warm-up, window at half of that round's
# saturation rate, drain), its daemons stopped. Printed per round and summarised per set-up:
# messages/s at saturation, p50 / p99 at half load, lost / duplicated / refused, and the CPU of
# every server process over the run (CPU lines: m5s A and B, A's store thread, the NATS servers,
# m5-aanf; messages per store round of each node, from /metrics). Raw lines and the summary go
# to bench/results/<date>-<commit>-js[-N].txt (or --out) and stdout. A run that lost,
# duplicated or refused anything fails the script (exit 1); its figures are kept apart and
# shown, marked, only for a set-up without a clean run. Not run by make test; the last part of
# `make bench`, `make bench-js` alone (about 4-5 minutes with the defaults).
#
# Usage: bench/js.sh [--build DIR] [--pairs N] [--runs R] [--secs S] [--warm S]
#                    [--only sqlite|js1|js3x2] [--out FILE]
#   defaults: build/release, 50 pairs, 3 rounds, 10 s windows, 2 s warm-up (as make bench).
# Every process is started by this script, tracked by pid and stopped by pid; loopback only.
# m5load's server CPU figures are node A's m5s alone; the CPU lines cover every server process
# (the NATS servers and node B share the 2 cores: docs/benchmarks.md says what that means).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$REPO/build/release
PAIRS=50 RUNS=3 SECS=10 WARM=2 ONLY='' OUT=''
while (($#)); do
  case $1 in
  --build) BUILD=$2; shift ;;
  --pairs) PAIRS=$2; shift ;;
  --runs) RUNS=$2; shift ;;
  --secs) SECS=$2; shift ;;
  --warm) WARM=$2; shift ;;
  --only) ONLY=$2; shift ;;
  --out) OUT=$2; shift ;;
  *) echo "bench-js: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
SYSTEMS=(sqlite js1 js3x2)
if [[ -n $ONLY ]]; then
  [[ " ${SYSTEMS[*]} " == *" $ONLY "* ]] || { echo "bench-js: --only sqlite|js1|js3x2" >&2; exit 2; }
  SYSTEMS=("$ONLY")
fi
BUILD=$(cd "$BUILD" && pwd)
BIN=$BUILD/bin
for b in m5-aanf m5s m5ctl m5load; do
  [[ -x $BIN/$b ]] || { echo "bench-js: $BIN/$b missing (make bench-build builds it)" >&2; exit 1; }
done
NATS_SERVER=$(command -v nats-server || true)
[[ -n $NATS_SERVER ]] || { echo "bench-js: nats-server missing: apt-get install nats-server" >&2; exit 1; }
help=$("$BIN/m5load" --help 2>&1 || true)
[[ $help == *--recv-port* ]] || { echo "bench-js: this m5load has no --recv-port" >&2; exit 1; }

BENCH_WHO=bench-js STOP_WAIT_S=10
source "$REPO/bench/proc.sh"
# shellcheck source=tools/nats-conf.sh
source "$REPO/tools/nats-conf.sh"
RUN_WHAT=bench/js.sh
T=$(mktemp -d /tmp/m5benchjs.XXXXXX)
bench_cleanup_on_exit "$T"

# shellcheck disable=SC2119 # no prefix
start_bench_aanf
"$BIN/m5load" --print-subscribers --pairs "$PAIRS" >"$T/subs.txt"

# wait_healthy_long PORT PID WHAT: /healthz within 90 s (a first start of m5s on JetStream
# creates its streams and buckets; R3 ones elect a leader each).
wait_healthy_long() {
  local i
  for ((i = 0; i < 900; i++)); do
    curl -sf --max-time 1 "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-js: $3 not healthy" >&2
  return 1
}

# start_nats N: N fresh nats-servers (a cluster when N > 1); sets NATS_LIST (the
# store.js.servers flow list) and NATS_PIDS.
start_nats() {
  local n=$1 k routes=() port=() mon=() route=()
  NATS_PIDS=()
  NATS_LIST=
  for ((k = 1; k <= n; k++)); do
    port[k]=$(pick_port) mon[k]=$(pick_port) route[k]=$(pick_port)
    routes+=("${route[k]}")
  done
  for ((k = 1; k <= n; k++)); do
    rm -rf "$T/nats$k"
    mkdir -p "$T/nats$k"
    if ((n > 1)); then
      nats_conf "$T/nats$k.conf" "n$k" "${port[k]}" "${mon[k]}" "$T/nats$k" m5bench "${route[k]}" "${routes[@]}"
    else
      nats_conf "$T/nats$k.conf" "n$k" "${port[k]}" "${mon[k]}" "$T/nats$k"
    fi
    NATS_LIST+="${NATS_LIST:+, }nats://127.0.0.1:${port[k]}"
  done
  for ((k = 1; k <= n; k++)); do
    "$NATS_SERVER" -c "$T/nats$k.conf" >>"$T/nats$k.log" 2>&1 &
    NATS_PIDS+=($!)
    PIDS+=($!)
  done
  for ((k = 1; k <= n; k++)); do
    wait_healthy_long "${mon[k]}" "${NATS_PIDS[k - 1]}" "nats-server n$k" || {
      tail "$T/nats$k.log" >&2
      exit 1
    }
  done
}

# start_node NAME STORE_LINES: m5s NAME (2 workers) on fresh ports with those store lines;
# sets NODE_PID[NAME], NODE_PORT[NAME], NODE_MGMT[NAME].
declare -A NODE_PID=() NODE_PORT=() NODE_MGMT=()
start_node() {
  local name=$1 store=$2 cfg=$T/m5s-$1.yaml
  NODE_PORT[$name]=$(pick_port)
  NODE_MGMT[$name]=$(pick_port)
  rm -rf "$T/m5s-$name"
  cat >"$cfg" <<EOF
ue: {host: 127.0.0.1, port: ${NODE_PORT[$name]}}
mgmt: {host: 127.0.0.1, port: ${NODE_MGMT[$name]}, token_file: $T/admin.token}
north: {host: 127.0.0.1, port: $(pick_port)}
oauth: {key: $T/pki/m5s-token.key}
aanf: {url: https://localhost:$AANF_PORT}
tls: {cert: $T/pki/m5s.crt, key: $T/pki/m5s.key, ca: $T/pki/ca.crt}
server: {fqdns: [localhost]}
db: {path: $T/m5s-$name/m5s.db}
workers: 2
log: {level: warn}
$store
EOF
  "$BIN/m5s" --config "$cfg" >>"$T/m5s-$name.log" 2>&1 &
  NODE_PID[$name]=$!
  PIDS+=($!)
  wait_healthy_long "${NODE_MGMT[$name]}" "${NODE_PID[$name]}" "m5s $name" || {
    tail "$T/m5s-$name.log" >&2
    exit 1
  }
}

# provision: the 2N subscribers through node a (its bindings; on JetStream every node sees
# them).
provision() {
  export BIN T AANF_PORT
  export MGMT=${NODE_MGMT[a]}
  # shellcheck disable=SC2016 # expanded by the inner bash
  xargs -P 4 -L 1 bash -c 'out=$("$BIN/m5ctl" subscriber add --ue-svc-id "$0" --supi "$1" \
    --kausf "$2" --aanf "https://localhost:$AANF_PORT" --m5s-admin "http://127.0.0.1:$MGMT" \
    --admin-token "$T/admin.token" --pki "$T/pki" 2>&1) || { echo "bench-js: provisioning $0: $out" >&2; exit 255; }' \
    <"$T/subs.txt"
}

# setup SYSTEM / teardown: the daemons of a set-up, fresh.
setup() {
  rm -f "$T/admin.token"
  case $1 in
  sqlite) start_node a "" ;;
  js1)
    start_nats 1
    start_node a "store: {backend: jetstream, js: {servers: [$NATS_LIST], replicas: 1}}
node: {name: a}"
    ;;
  js3x2)
    start_nats 3
    local n
    for n in a b; do
      start_node "$n" "store: {backend: jetstream, js: {servers: [$NATS_LIST], replicas: 3}}
node: {name: $n}"
    done
    ;;
  esac
  provision
}
teardown() {
  local n p
  for n in b a; do
    [[ -n ${NODE_PID[$n]:-} ]] && stop_pid "${NODE_PID[$n]}" "m5s $n"
    NODE_PID[$n]=
  done
  for p in "${NATS_PIDS[@]}"; do stop_pid "$p" nats-server; done
  NATS_PIDS=()
}
NATS_PIDS=()

RAW=$T/raw.txt
: >"$RAW"
GEN_ARGS=(--pairs "$PAIRS" --window 20 --warm "$WARM" --secs "$SECS" --half 0.5 --drain 5)
GEN_TIMEOUT=$((60 + 2 * (${WARM%.*} + ${SECS%.*}) + 10))
FAILED=0

# ticks PID [THREAD]: CPU clock ticks (user + system) of a process, or of its threads named
# THREAD; 0 when gone.
ticks() {
  local f t=0 comm rest
  if [[ -z ${2:-} ]]; then
    read -r rest 2>/dev/null <"/proc/$1/stat" || { echo 0; return; }
    rest=${rest##*) }
    read -ra f <<<"$rest"
    echo $((f[11] + f[12]))
    return
  fi
  for d in /proc/"$1"/task/*; do
    read -r comm 2>/dev/null <"$d/comm" || continue
    [[ $comm == "$2" ]] || continue
    read -r rest 2>/dev/null <"$d/stat" || continue
    rest=${rest##*) }
    read -ra f <<<"$rest"
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}

# rounds NAME: the store rounds of node NAME so far (msgin5g_store_commits_total, both labels:
# on JetStream a batch of accepts, or of deletes, is one round trip to the cluster); 0 when none.
rounds() {
  [[ -n ${NODE_MGMT[$1]:-} ]] || { echo 0; return; }
  curl -s --max-time 2 "http://127.0.0.1:${NODE_MGMT[$1]}/metrics" 2>/dev/null |
    awk '/^msgin5g_store_commits_total/ {n += $2} END {printf "%d\n", n}'
}

# cpu_snapshot: ticks of node a, node b, node a's store thread, the NATS servers (sum), m5-aanf.
cpu_snapshot() {
  local p n=0
  for p in "${NATS_PIDS[@]}"; do n=$((n + $(ticks "$p"))); done
  echo "$(ticks "${NODE_PID[a]}") $(ticks "${NODE_PID[b]:-0}") \
$(($(ticks "${NODE_PID[a]}" m5-store-js) + $(ticks "${NODE_PID[a]}" store))) $n $(ticks "$AANF_PID")"
}

run_one() { # SYSTEM RUN
  local sys=$1 run=$2 rc=0 out=$T/gen.out extra=() c0 c1 t0 t1
  [[ $sys == js3x2 ]] && extra=(--recv-port "${NODE_PORT[b]}")
  c0=$(cpu_snapshot) t0=$(date +%s%N) r0="$(rounds a) $(rounds b)"
  timeout "$GEN_TIMEOUT" "$BIN/m5load" --port "${NODE_PORT[a]}" --server-pid "${NODE_PID[a]}" \
    --label "$sys" "${GEN_ARGS[@]}" "${extra[@]}" >"$out" 2>"$T/gen.err" || rc=$?
  c1=$(cpu_snapshot) t1=$(date +%s%N) r1="$(rounds a) $(rounds b)"
  # the CPU of every server process over the whole generator run (warm-ups, both windows,
  # drain), in % of one core: where the time goes (docs/benchmarks.md "What limits scaling")
  local sent
  sent=$(awk '/phase=total/ {for(i=1;i<=NF;i++){split($i,x,"="); if (x[1]=="delivered") print x[2]}}' "$out")
  python3 - "$sys" "$run" "$((t1 - t0))" "$(getconf CLK_TCK)" "${sent:-0}" $r0 $r1 $c0 $c1 <<'EOF' | tee -a "$RAW" >&2
import sys
sysname, run, ns, hz, sent = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = [int(x) for x in sys.argv[6:10]]
v = [int(x) for x in sys.argv[10:]]
a, b = v[:5], v[5:]
secs = ns / 1e9
pct = lambda i: 100.0 * (b[i] - a[i]) / hz / secs
per = lambda d: "%.1f" % (sent / d) if d > 0 and sent else "-"
print("CPU system=%s run=%s secs=%.1f m5s_a=%.1f m5s_b=%.1f store_thread_a=%.1f nats=%.1f aanf=%.1f "
      "msgs=%d msgs_per_round_a=%s msgs_per_round_b=%s"
      % (sysname, run, secs, pct(0), pct(1), pct(2), pct(3), pct(4), sent,
         per(r[2] - r[0]), per(r[3] - r[1])))
EOF
  local tag=RESULT
  if ((rc)) || ! grep -q 'phase=total' "$out"; then
    echo "bench-js: $sys run $run failed (generator exit $rc):" >&2
    tail -n 20 "$T/gen.err" >&2
    tail -n 10 "$T/m5s-a.log" >&2
    echo "# $sys run $run failed (generator exit $rc)" >>"$RAW"
    FAILED=1
    grep -q 'phase=total' "$out" || return 0
    # it ran to its end but something was lost, duplicated or refused: its figures are kept
    # apart (LOSSY), used only when a set-up has no clean run, and marked so
    tag=LOSSY
  fi
  sed "s/^RESULT /$tag run=$run /" "$out" >>"$RAW"
  awk -v s="$sys" -v r="$run" '/phase=sat/ {for(i=1;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]}
    printf "bench-js: %-6s run %d: %s msg/s, m5s(A) CPU %s %%; ", s, r, v["rate"], v["srv_cpu_pct"]}
    /phase=half/ {for(i=1;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]} printf "at %s msg/s p50/p99 %s/%s us; ", v["rate"], v["p50_us"], v["p99_us"]}
    /phase=total/ {for(i=1;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]} printf "lost %s dup %s failed %s\n", v["lost"], v["dup"], v["failed"]}' "$out" >&2
}

for sys in "${SYSTEMS[@]}"; do
  echo "bench-js: $sys: starting (fresh stores), provisioning $((2 * PAIRS)) subscribers" >&2
  setup "$sys"
  for ((r = 1; r <= RUNS; r++)); do run_one "$sys" "$r"; done
  teardown
done

# ---- summary: medians per set-up ----
SUMMARY=$(python3 - "$RAW" "${SYSTEMS[@]}" <<'EOF'
import statistics, sys
raw, systems = sys.argv[1], sys.argv[2:]
rows, lossy = {}, {}
for line in open(raw):
    if not line.startswith(("RESULT ", "LOSSY ")):
        continue
    kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    (rows if line.startswith("RESULT ") else lossy).setdefault(
        (kv.get("system"), kv.get("phase")), []).append(kv)
marked = set()
for (sysname, phase), v in lossy.items():  # a set-up without a clean run: its lossy runs, marked
    if not any(k[0] == sysname for k in rows):
        marked.add(sysname)
for (sysname, phase), v in lossy.items():
    if sysname in marked:
        rows.setdefault((sysname, phase), []).extend(v)
def med(sysname, phase, key):
    vals = [float(r[key]) for r in rows.get((sysname, phase), []) if r.get(key) not in (None, "")]
    return statistics.median(vals) if vals else None
cpu = {}
for line in open(raw):
    if line.startswith("CPU "):
        kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        cpu.setdefault(kv["system"], []).append(kv)
def cmed(sysname, key):
    vals = [float(r[key]) for r in cpu.get(sysname, [])]
    return "%.0f" % statistics.median(vals) if vals else "-"
print("%-7s %12s %14s %10s %10s %10s | CPU %% of a core over a run: %s" % (
    "system", "msg/s (sat)", "p99 us (half)", "p50 (half)", "vs sqlite", "p99 ratio",
    "m5s A, m5s B, A's store thread, NATS (all), m5-aanf"))
base, base99 = med("sqlite", "sat", "rate"), med("sqlite", "half", "p99_us")
for s in systems:
    rate, p99, p50 = med(s, "sat", "rate"), med(s, "half", "p99_us"), med(s, "half", "p50_us")
    if s in marked:
        lost = med(s, "total", "lost")
        print("# %s: no run delivered everything by the end of its drain (median lost %s): its "
              "figures are from those runs" % (s, "%.0f" % lost if lost is not None else "?"))
    ratio = "%.3f" % (rate / base) if rate and base else "-"
    r99 = "%.1f" % (p99 / base99) if p99 and base99 else "-"
    print("%-7s %12s %14s %10s %10s %10s | %s" % (
        s + ("*" if s in marked else ""), "%.0f" % rate if rate else "failed", "%.0f" % p99 if p99 else "-",
        "%.0f" % p50 if p50 else "-", ratio, r99,
        " ".join(cmed(s, k) for k in ("m5s_a", "m5s_b", "store_thread_a", "nats", "aanf"))))
EOF
)
echo "$SUMMARY"

# ---- results file ----
if [[ -z $OUT ]]; then
  commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo nogit)
  base=$REPO/bench/results/$(date -u +%F)-$commit-js
  OUT=$base.txt
  n=2
  while [[ -e $OUT ]]; do OUT=$base-$n.txt; n=$((n + 1)); done
fi
mkdir -p "$(dirname "$OUT")"
{
  echo "# bench/js.sh: $PAIRS pairs, $RUNS rounds, ${SECS} s windows, ${WARM} s warm-up; $(nproc) CPUs; $(date -u +%FT%TZ)"
  echo "# systems: ${SYSTEMS[*]} (js3x2: senders on node A, receivers on node B)"
  cat "$RAW"
  while IFS= read -r l; do echo "# $l"; done <<<"$SUMMARY"
} >"$OUT"
echo "bench-js: results in $OUT" >&2
exit "$FAILED"
