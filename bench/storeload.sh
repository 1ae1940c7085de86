#!/usr/bin/env bash
# The message store alone (docs/benchmarks.md "Scale-out on JetStream"): bench/storeload (N
# ACCEPTs with a window of W jobs outstanding, then N MARK_DELIVERED) against SQLite, JetStream
# on one nats-server (replicas 1) and on three clustered nats-servers (replicas 3), side by side,
# R rounds each (every round on fresh NATS servers and a fresh SQLite file). Prints the RESULT
# lines and the medians; with --out FILE also writes them there. Not part of make test.
#
# Usage: bench/storeload.sh [--build DIR] [--n N] [--window W] [--runs R] [--out FILE]
#   defaults: build/release, 20000 jobs, window 64, 3 rounds.
# Every process is started here, tracked by pid and stopped by pid; loopback only.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$REPO/build/release
N=20000 W=64 RUNS=3 OUT=''
while (($#)); do
  case $1 in
  --build) BUILD=$2; shift ;;
  --n) N=$2; shift ;;
  --window) W=$2; shift ;;
  --runs) RUNS=$2; shift ;;
  --out) OUT=$2; shift ;;
  *) echo "storeload: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
BIN=$(cd "$BUILD" && pwd)/bin
[[ -x $BIN/storeload ]] || { echo "storeload: $BIN/storeload missing (make bench-build)" >&2; exit 1; }
NATS_SERVER=$(command -v nats-server || true)
[[ -n $NATS_SERVER ]] || { echo "storeload: nats-server missing" >&2; exit 1; }

BENCH_WHO=storeload STOP_WAIT_S=10
source "$REPO/bench/proc.sh"
# shellcheck source=tools/nats-conf.sh
source "$REPO/tools/nats-conf.sh"
T=$(mktemp -d /tmp/m5storeload.XXXXXX)
bench_cleanup_on_exit "$T"

# nats_up K: K fresh nats-servers (clustered when K > 1), healthy; sets URL (the first's) and
# NPIDS.
nats_up() {
  local k=$1 i port=() mon=() route=() routes=()
  NPIDS=()
  for ((i = 1; i <= k; i++)); do
    port[i]=$(pick_port) mon[i]=$(pick_port) route[i]=$(pick_port)
    routes+=("${route[i]}")
  done
  for ((i = 1; i <= k; i++)); do
    rm -rf "$T/n$i"
    mkdir -p "$T/n$i"
    if ((k > 1)); then
      nats_conf "$T/n$i.conf" "n$i" "${port[i]}" "${mon[i]}" "$T/n$i" slb "${route[i]}" "${routes[@]}"
    else
      nats_conf "$T/n$i.conf" "n$i" "${port[i]}" "${mon[i]}" "$T/n$i"
    fi
  done
  for ((i = 1; i <= k; i++)); do
    "$NATS_SERVER" -c "$T/n$i.conf" >>"$T/n$i.log" 2>&1 &
    NPIDS+=($!)
    PIDS+=($!)
  done
  for ((i = 1; i <= k; i++)); do
    wait_health "${mon[i]}" "${NPIDS[i - 1]}" || { tail "$T/n$i.log" >&2; exit 1; }
  done
  URL=nats://127.0.0.1:${port[1]}
}
nats_down() {
  local p
  for p in "${NPIDS[@]}"; do stop_pid "$p" nats-server; done
  NPIDS=()
}

RAW=$T/raw.txt
: >"$RAW"
for ((r = 1; r <= RUNS; r++)); do
  for sys in sqlite js1 js3; do
    args=(--n "$N" --window "$W")
    case $sys in
    sqlite) rm -rf "$T/sq" && mkdir -p "$T/sq" && args+=(--dir "$T/sq") ;;
    js1) nats_up 1 && args+=(--jetstream "$URL" --replicas 1) ;;
    js3) nats_up 3 && args+=(--jetstream "$URL" --replicas 3) ;;
    esac
    line=$("$BIN/storeload" "${args[@]}" 2>"$T/err.txt") || {
      echo "storeload: $sys round $r failed:" >&2
      cat "$T/err.txt" >&2
      line="# $sys round $r failed"
    }
    [[ $sys == sqlite ]] || nats_down
    echo "$line system=$sys run=$r" | tee -a "$RAW"
  done
done
SUMMARY=$(python3 - "$RAW" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    rows.setdefault(kv["system"], []).append(kv)
def med(s, k):
    v = [float(r[k]) for r in rows.get(s, [])]
    return (statistics.median(v), min(v), max(v)) if v else None
print("%-7s %24s %24s %14s" % ("system", "accepts/s med (min-max)", "marks/s med (min-max)", "accepts/round"))
for s in ("sqlite", "js1", "js3"):
    a, m, b = med(s, "accepts_per_s"), med(s, "marks_per_s"), med(s, "accept_rounds")
    if not a:
        print("%-7s failed" % s); continue
    n = float(rows[s][0]["n"])
    per = "%.1f" % (n / b[0]) if b and b[0] else "-"
    print("%-7s %24s %24s %14s" % (s, "%.0f (%.0f-%.0f)" % a, "%.0f (%.0f-%.0f)" % m, per))
EOF
)
echo "$SUMMARY"
if [[ -n $OUT ]]; then
  {
    echo "# bench/storeload.sh: n=$N window=$W runs=$RUNS build=${BUILD#"$REPO"/}; $(nproc) CPUs; $(date -u +%FT%TZ); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    cat "$RAW"
    while IFS= read -r l; do echo "# $l"; done <<<"$SUMMARY"
  } >"$OUT"
  echo "storeload: results in $OUT" >&2
fi
