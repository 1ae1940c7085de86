#!/usr/bin/env bash
# Idle devices and the registration storm (docs/benchmarks.md, "Idle devices and registration
# storm"): memory per connected idle device of m5s over TLS and over DTLS and of Mosquitto over
# TLS-PSK, and m5s's connection rate with a cold K_AF cache through the real m5-aanf against the
# raw OpenSSL TLS 1.3 PSK handshake rate of the same suite and key exchange, in one run.
#
# Usage: bench/idle.sh [--idle-clients N] [--build DIR] [--parallel P] [--settle S]
#                      [--name NAME] [--results DIR]
#   --idle-clients (10000): idle clients per system and transport; also the number of
#                  connections of each side of the storm.
#   --parallel (64): handshakes (+ REG / CONNECT) in progress at once, every tool alike. m5s
#                  keeps its default per-source bounds (ue.max_handshakes_per_addr 256,
#                  aanf.max_fetches_per_addr 64 per worker): 64 from 127.0.0.1 stay inside them.
#   --settle (3): seconds idle after the last registration before the server's RSS is read.
#   --results (bench/results): where the raw results go, as <date>-<commit>-idle[-NAME][.k].txt
#                  (an existing file is never overwritten: .2, .3 ... are appended).
# Prints exactly:
#   rss_kib_per_idle_client m5s=<v> mosquitto=<v> ratio=<m5s/mosquitto>      (TLS)
#   rss_kib_per_idle_client_dtls m5s=<v>
#   connects_per_s m5s=<v> raw_psk=<v> ratio=<m5s/raw>
# m5s's figure per idle client is (RSS growth - growth of msgin5g_store_sqlite_memory_bytes) / N:
# the SQLite page caches (registry and message store: the registrations the REGs write) are
# excluded; m5s runs with store.sqlite_memstatus true so that SQLite counts them. Each m5s
# measurement starts a fresh m5s on a fresh store (cold K_AF cache: its first run is the storm).
# Every process is started here, tracked by pid, stopped by pid; loopback only. Exit 1 when a
# client failed, a session was lost, or a line cannot be computed.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$REPO/build/release
N=10000 PAR=64 SETTLE=3 NAME= RESULTS=$REPO/bench/results
while (($#)); do
  case $1 in
  --idle-clients) N=$2; shift ;;
  --build) BUILD=$2; shift ;;
  --parallel) PAR=$2; shift ;;
  --settle) SETTLE=$2; shift ;;
  --name) NAME=$2; shift ;;
  --results) RESULTS=$2; shift ;;
  *) echo "idle: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ $N =~ ^[0-9]+$ ]] && ((N >= 1)) || { echo "idle: --idle-clients N (1 or more)" >&2; exit 2; }
BUILD=$(cd "$BUILD" && pwd)
BIN=$BUILD/bin
for b in m5-aanf m5s m5ctl m5idle mqidle storm; do
  [[ -x $BIN/$b ]] || { echo "idle: $BIN/$b missing (make bench-build builds it)" >&2; exit 1; }
done
command -v mosquitto >/dev/null || { echo "idle: mosquitto missing: apt-get install mosquitto" >&2; exit 1; }
# 10,000 sessions on each side of loopback: the soft limit up to the hard one (both servers
# and the generators inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < N + 256)); then
  echo "idle: warning: ulimit -n $(ulimit -n) is below $N clients + 256" >&2
fi

BENCH_WHO=idle STOP_WAIT_S=10
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/proc.sh"
T=$(mktemp -d /tmp/m5idle.XXXXXX)
bench_cleanup_on_exit "$T"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
RAW=$T/raw.txt
: >"$RAW"
TMO=$((120 + N / 20))

# ---- m5-aanf and the subscribers ----
start_bench_aanf

M5S_PORT=$(pick_port) M5S_MGMT=$(pick_port) M5S_NORTH=$(pick_port)
SRV_PID=
start_m5s() { # fresh store unless KEEP=1
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$T/m5s/db"
  mkdir -p "$T/m5s/db"
  cat >"$T/m5s.yaml" <<EOF
ue: {host: 127.0.0.1, port: $M5S_PORT}
mgmt: {host: 127.0.0.1, port: $M5S_MGMT, token_file: $T/m5s/admin.token}
north: {host: 127.0.0.1, port: $M5S_NORTH}
oauth: {key: $T/pki/m5s-token.key}
aanf: {url: https://localhost:$AANF_PORT}
tls: {cert: $T/pki/m5s.crt, key: $T/pki/m5s.key, ca: $T/pki/ca.crt}
server: {fqdns: [localhost]}
db: {path: $T/m5s/db/m5s.db}
store: {sqlite_memstatus: true}
workers: 2
log: {level: warn}
EOF
  "$BIN/m5s" --config "$T/m5s.yaml" >>"$T/m5s.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  wait_health "$M5S_MGMT" "$SRV_PID" || { tail "$T/m5s.log" >&2; echo "idle: m5s not healthy" >&2; exit 1; }
}

echo "idle: provisioning $N subscribers (m5ctl subscriber import)" >&2
start_m5s
"$BIN/m5idle" --print-subscribers --clients "$N" >"$T/subs.txt"
timeout $((120 + N / 10)) "$BIN/m5ctl" subscriber import "$T/subs.txt" --aanf "https://localhost:$AANF_PORT" \
  --m5s-admin "http://127.0.0.1:$M5S_MGMT" --admin-token "$T/m5s/admin.token" --pki "$T/pki" \
  >"$T/import.out" 2>&1 || { tail -5 "$T/import.out" >&2; echo "idle: provisioning failed" >&2; exit 1; }
stop_pid "$SRV_PID" m5s
# the provisioned store (UE Service IDs) is kept; each run starts from a copy of it
cp -a "$T/m5s/db" "$T/m5s/db.provisioned"

m5s_run() { # TRANSPORT(tls|dtls): a fresh m5s (cold K_AF cache) on a copy of the provisioned store
  local tr=$1 rc=0 out=$T/m5idle.$1.out extra=()
  rm -rf "$T/m5s/db" && cp -a "$T/m5s/db.provisioned" "$T/m5s/db"
  KEEP=1 start_m5s
  [[ $tr == dtls ]] && extra=(--dtls)
  timeout "$TMO" "$BIN/m5idle" --port "$M5S_PORT" --clients "$N" --parallel "$PAR" \
    --server-pid "$SRV_PID" --metrics-port "$M5S_MGMT" --settle "$SETTLE" --label "m5s" \
    --timeout $((TMO - 10)) "${extra[@]}" >"$out" 2>"$T/m5idle.$tr.err" || rc=$?
  local metrics
  metrics=$(curl -s --max-time 5 "http://127.0.0.1:$M5S_MGMT/metrics" | grep -E '^msgin5g_(sessions|akma_fetches_total|akma_refused_total|registrations)' | tr '\n' ' ' || true)
  stop_pid "$SRV_PID" m5s
  if ((rc)) || ! grep -q '^RESULT ' "$out"; then
    echo "idle: m5s over $tr failed (m5idle exit $rc):" >&2
    tail -n 8 "$T/m5idle.$tr.err" >&2
    tail -n 5 "$T/m5s.log" >&2
    exit 1
  fi
  cat "$out" >>"$RAW"
  echo "# m5s over $tr once the UEs had left (the sessions closed): $metrics" >>"$RAW"
  echo "idle: m5s $tr: $(grep '^RESULT' "$out")" >&2
}

# ---- m5s over TLS (the storm: its connect phase) and over DTLS ----
m5s_run tls
m5s_run dtls
stop_pid "$AANF_PID" m5-aanf

# ---- the raw PSK handshake rate: storm's server (2 threads, as m5s's 2 workers) ----
ST_PORT=$(pick_port)
"$BIN/storm" --serve --port "$ST_PORT" --workers 2 >>"$T/storm.log" 2>&1 &
ST_PID=$!
PIDS+=("$ST_PID")
wait_port "$ST_PORT" "$ST_PID" || { tail "$T/storm.log" >&2; echo "idle: storm server did not start" >&2; exit 1; }
rc=0
timeout "$TMO" "$BIN/storm" --port "$ST_PORT" --connects "$N" --parallel "$PAR" --server-pid "$ST_PID" \
  --timeout $((TMO - 10)) >"$T/storm.out" 2>>"$T/storm.log" || rc=$?
stop_pid "$ST_PID" storm
if ((rc)) || ! grep -q '^RESULT ' "$T/storm.out"; then
  echo "idle: the raw PSK storm failed (exit $rc): $(tail -3 "$T/storm.log")" >&2
  exit 1
fi
cat "$T/storm.out" >>"$RAW"
echo "idle: raw: $(cat "$T/storm.out")" >&2

# ---- Mosquitto: idle TLS-PSK clients ----
MQ_PORT=$(pick_port)
"$BIN/mqidle" --print-psk --clients "$N" >"$T/psk.txt"
chmod 600 "$T/psk.txt"
mkdir -p "$T/mq"
{
  echo "per_listener_settings false"
  echo "allow_anonymous true"
  echo "persistence true"
  echo "persistence_location $T/mq/"
  echo "autosave_interval 1800"
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
mosquitto -c "$T/mosquitto.conf" >>"$T/mosquitto.log" 2>&1 &
MQ_PID=$!
PIDS+=("$MQ_PID")
wait_port "$MQ_PORT" "$MQ_PID" || { tail "$T/mosquitto.log" >&2; echo "idle: mosquitto did not start" >&2; exit 1; }
rc=0
timeout "$TMO" "$BIN/mqidle" --port "$MQ_PORT" --clients "$N" --parallel "$PAR" \
  --server-pid "$MQ_PID" --settle "$SETTLE" --timeout $((TMO - 10)) >"$T/mqidle.out" 2>"$T/mqidle.err" || rc=$?
stop_pid "$MQ_PID" mosquitto
if ((rc)) || ! grep -q '^RESULT ' "$T/mqidle.out"; then
  echo "idle: mosquitto failed (mqidle exit $rc): $(tail -5 "$T/mqidle.err")" >&2
  tail -n 5 "$T/mosquitto.log" >&2
  exit 1
fi
cat "$T/mqidle.out" >>"$RAW"
echo "idle: mosquitto: $(cat "$T/mqidle.out")" >&2

# ---- the lines ----
R_TLS=$(grep '^RESULT system=m5s transport=tls ' "$RAW")
R_DTLS=$(grep '^RESULT system=m5s transport=dtls ' "$RAW")
R_RAW=$(grep '^RESULT system=raw_psk ' "$RAW")
R_MQ=$(grep '^RESULT system=mosquitto ' "$RAW")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }'; }
M_TLS=$(field kib_per_client "$R_TLS") M_DTLS=$(field kib_per_client "$R_DTLS")
M_MQ=$(field kib_per_client "$R_MQ")
C_M5S=$(field connects_per_s "$R_TLS") C_RAW=$(field connects_per_s "$R_RAW")
LINES=("rss_kib_per_idle_client m5s=$M_TLS mosquitto=$M_MQ ratio=$(ratio "$M_TLS" "$M_MQ")"
  "rss_kib_per_idle_client_dtls m5s=$M_DTLS"
  "connects_per_s m5s=$C_M5S raw_psk=$C_RAW ratio=$(ratio "$C_M5S" "$C_RAW")")

mkdir -p "$RESULTS"
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
BASE=$RESULTS/$(date -u +%Y-%m-%d)-$COMMIT-idle${NAME:+-$NAME}
OUT=$BASE.txt
k=2
while [[ -e $OUT ]]; do OUT=$BASE.$k.txt; k=$((k + 1)); done
{
  echo "# bench/idle.sh --idle-clients $N --parallel $PAR --settle $SETTLE: $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "# machine: nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
    "kernel $(uname -r), $(openssl version | cut -d' ' -f1-2), $(mosquitto -h 2>/dev/null | head -n 1)"
  echo "# git: $COMMIT$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), build ${BUILD#"$REPO"/}"
  echo "# m5s: 2 workers, fresh process and K_AF cache per transport, real m5-aanf, store under /tmp;" \
    "kib_per_client = (RSS growth - msgin5g_store_sqlite_memory_bytes growth) / clients (store cache excluded)"
  echo "# mosquitto: TLS-PSK (TLS 1.3, psk_dhe_ke), persistence true (autosave_interval 1800), store under /tmp;" \
    "kib_per_client = RSS growth / clients"
  echo "# raw_psk: bench/storm, 2 server threads, TLS 1.3 PSK of the same suite and group, no ALPN, no AAnF"
  cat "$RAW"
  printf '%s\n' "${LINES[@]}"
} >"$OUT"
printf '%s\n' "${LINES[@]}"
echo "idle: raw results in ${OUT#"$REPO"/}" >&2
