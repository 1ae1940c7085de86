#!/usr/bin/env bash
# What one message costs m5s in system calls, fsyncs and thread switches at a paced, partial
# load (docs/benchmarks.md, "Partial load: the hand-offs"): the counts behind the CPU per
# message at half load, which timings on a shared machine cannot show. m5s with one worker
# (core 0) and m5load (core 1), point-to-point over TLS 1.3 as in bench/vs-mosquitto, paced
# open loop at each RATE; per message: each thread's voluntary and involuntary context switches
# (/proc/PID/task/*/status, by thread name), and with `perf` (perf trace -s) its system calls
# by kind (fdatasync, epoll_wait, futex, read, write, sendto, recvfrom, pwrite64). perf trace
# slows every system call down, so it runs only at rates up to --trace-max (default 1000):
# above, m5s would batch as it never does untraced, and only the switches are counted.
#
# Usage: bench/hops.sh [--build DIR] [--pairs N] [--secs S] [--name NAME] [--trace-max R] [RATE ...]
#   defaults: build/release, 100 pairs, 6 s windows, rates 300 5000 18000.
# Output: stdout and bench/results/<date>-<commit>-hops[-N].txt (never overwritten).
# Every process is started here, tracked by pid and stopped by pid; loopback only.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$REPO/build/release PAIRS=100 SECS=6 NAME=hops RATES=() TRACE_MAX=1000
while (($#)); do
  case $1 in
  --build) BUILD=$2; shift ;;
  --pairs) PAIRS=$2; shift ;;
  --secs) SECS=$2; shift ;;
  --name) NAME=$2; shift ;;
  --trace-max) TRACE_MAX=$2; shift ;;
  -h | --help) sed -n '2,16p' "$0" | sed 's/^# \?//'; exit 0 ;;
  [0-9]*) RATES+=("$1") ;;
  *) echo "hops: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done
((${#RATES[@]})) || RATES=(300 5000 18000)
BIN=$(cd "$BUILD" && pwd)/bin
for b in m5-aanf m5s m5ctl m5load; do
  [[ -x $BIN/$b ]] || { echo "hops: $BIN/$b missing (make bench-build builds it)" >&2; exit 1; }
done
HAVE_PERF=0
command -v perf >/dev/null && perf trace -s -- true >/dev/null 2>&1 && HAVE_PERF=1

BENCH_WHO=hops STOP_WAIT_S=5
source "$REPO/bench/proc.sh"
T=$(mktemp -d /tmp/m5hops.XXXXXX)
bench_cleanup_on_exit "$T"
PIN_SRV=() PIN_GEN=()
if (($(nproc) >= 2)) && command -v taskset >/dev/null; then PIN_SRV=(taskset -c 0) PIN_GEN=(taskset -c 1); fi

start_bench_aanf "${PIN_SRV[@]}"
M5S_PORT=$(pick_port) M5S_MGMT=$(pick_port) M5S_NORTH=$(pick_port)
mkdir -p "$T/db"
cat >"$T/m5s.yaml" <<EOF
ue: {host: 127.0.0.1, port: $M5S_PORT}
mgmt: {host: 127.0.0.1, port: $M5S_MGMT, token_file: $T/admin/admin.token}
north: {host: 127.0.0.1, port: $M5S_NORTH}
oauth: {key: $T/pki/m5s-token.key}
aanf: {url: https://localhost:$AANF_PORT}
tls: {cert: $T/pki/m5s.crt, key: $T/pki/m5s.key, ca: $T/pki/ca.crt}
server: {fqdns: [localhost]}
db: {path: $T/db/m5s.db}
workers: 1
log: {level: warn}
EOF
"${PIN_SRV[@]}" "$BIN/m5s" --config "$T/m5s.yaml" >>"$T/m5s.log" 2>&1 &
SRV_PID=$!
PIDS+=("$SRV_PID")
wait_health "$M5S_MGMT" "$SRV_PID" || { tail "$T/m5s.log" >&2; echo "hops: m5s not healthy" >&2; exit 1; }
"$BIN/m5load" --print-subscribers --pairs "$PAIRS" | awk '{print $2, $3, $1}' >"$T/subs.txt"
timeout 600 "$BIN/m5ctl" subscriber import "$T/subs.txt" --aanf "https://localhost:$AANF_PORT" \
  --m5s-admin "http://127.0.0.1:$M5S_MGMT" --admin-token "$T/admin/admin.token" --pki "$T/pki" \
  >"$T/import.out" 2>&1 || { cat "$T/import.out" >&2; echo "hops: provisioning failed" >&2; exit 1; }

switches() { # -> "name vol invol" per thread of m5s
  local t
  for t in /proc/"$SRV_PID"/task/*; do
    echo "$(cat "$t/comm") $(awk '/^voluntary_ctxt/{v=$2} /^nonvoluntary_ctxt/{n=$2} END{print v, n}' "$t/status")"
  done
}

DATE=$(date -u +%Y-%m-%d)
base=$REPO/bench/results/$DATE-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo nogit)-$NAME
[[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]] && base=$base-dirty
OUT=$base.txt k=1
while [[ -e $OUT ]]; do k=$((k + 1)); OUT=$base-$k.txt; done
{
  echo "# bench/hops.sh: $PAIRS pairs, $SECS s windows, m5s 1 worker pinned to core 0, m5load core 1"
  echo "# git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo nogit), binaries from ${BUILD#"$REPO"/}"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); perf trace: $([[ $HAVE_PERF == 1 ]] && echo yes || echo no)"
} | tee "$OUT"
WIN=3 # seconds of counting, inside the measuring window
for r in "${RATES[@]}"; do
  trace=0
  ((HAVE_PERF && r <= TRACE_MAX)) && trace=1
  (
    sleep $((2 + SECS / 2 - WIN / 2))
    switches >"$T/sw0"
    if ((trace)); then
      timeout $((WIN + 10)) perf trace -s -p "$SRV_PID" -- sleep "$WIN" >"$T/trace" 2>&1 || true
    else
      sleep "$WIN"
    fi
    switches >"$T/sw1"
  ) &
  counter=$!
  "${PIN_GEN[@]}" "$BIN/m5load" --port "$M5S_PORT" --pairs "$PAIRS" --window 20 --warm 2 --secs "$SECS" \
    --rate "$r" --drain 10 --server-pid "$SRV_PID" --label "hops-$r" >"$T/gen.out" 2>"$T/gen.err" || true
  wait "$counter" || true
  rate=$(sed -n 's/^RESULT .*phase=paced .* rate=\([0-9.]*\) .*/\1/p' "$T/gen.out" | head -n 1)
  sed -n 's/^RESULT .*phase=paced /RESULT rate_target='"$r"' /p' "$T/gen.out" | tee -a "$OUT"
  msgs=$(awk -v r="${rate:-$r}" -v w="$WIN" 'BEGIN{printf "%.0f", r * w}')
  paste "$T/sw0" "$T/sw1" | awk -v m="$msgs" -v r="$r" \
    '{printf "SWITCHES rate=%s thread=%s vol_per_msg=%.2f invol_per_msg=%.2f\n", r, $1, ($5-$2)/m, ($6-$3)/m}' | tee -a "$OUT"
  if ((trace)); then
    # perf trace -s: one block per thread ("comm (tid), N events"), then "syscall calls errors ..."
    awk -v m="$msgs" -v r="$r" '
      /events,/ {thr = $1; next}
      $1 ~ /^(fdatasync|epoll_wait|futex|read|write|sendto|recvfrom|pwrite64|sendmsg|recvmsg)$/ && $2 ~ /^[0-9]+$/ {
        printf "SYSCALLS rate=%s thread=%s call=%s per_msg=%.2f errors_per_msg=%.2f\n", r, thr, $1, $2/m, $3/m }' \
      "$T/trace" | tee -a "$OUT"
  fi
done
echo "# results: $OUT" >&2
