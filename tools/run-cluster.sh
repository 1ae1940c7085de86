#!/usr/bin/env bash
# `make run-cluster`: two m5s nodes sharing their state on a three-node NATS JetStream cluster,
# on loopback (docs/scale-out.md). Usage: tools/run-cluster.sh BUILD_DIR (binaries in
# BUILD_DIR/bin).
#
# In order: the development PKI under var/pki (as `make run`); three nats-server nodes
# clustered with JetStream (configs var/cluster/run/nats-K.conf, checked with nats-server -t;
# stores var/cluster/nats-K/; waits for each /healthz, i.e. JetStream up with a meta leader);
# m5-aanf on its usual ports (waits for its /healthz); m5s node A, then node B, both with
# store.backend jetstream, store.js.replicas 3 and all three NATS URLs, node.name a / b (waits
# for each /healthz); the demo subscribers ue1 and ue2 provisioned through node A's admin API
# (m5ctl subscriber add), which node B sees through the cluster; the demo client configs
# var/cluster/demo/ue1.yaml (CoAP over TLS to node A) and ue2.yaml (CoAP over DTLS to node B),
# mode 0600; then ONE line starting READY with the m5c commands to try (ue1 on A sends, ue2 on B
# receives), and it waits.
# Ctrl-C or SIGTERM stops the daemons by pid in the reverse order of their start: m5s-b, m5s-a
# (each drains while NATS is still there), m5-aanf, nats-3, nats-2, nats-1 (SIGINT: nats-server's
# clean shutdown, exit 0); each must exit 0 within 5 s; run-cluster.sh then exits 0. If a daemon
# dies, its log tail is printed, the others are stopped and run-cluster.sh exits 1. Every run is
# idempotent: the PKI, the NATS stores (streams and buckets) and the databases are kept, the
# demo subscribers are provisioned again.
#
# One admin token for both nodes: both read mgmt.token_file var/m5s/admin.token (m5ctl's
# default path; node A writes it at its first start, node B starts after A), so `m5ctl` talking
# to node A (its default http://127.0.0.1:9090) or to node B (--m5s-admin
# http://127.0.0.1:9190) is authorised by the same file.
#
# Files under $M5_RUN_DIR/var: pki/ (as make run), aanf/ (the AAnF's database, as make run),
# m5s/admin.token, and cluster/: run/ (m5s-a.pid, m5s-b.pid, nats-1.pid..nats-3.pid,
# m5-aanf.pid, each the daemon's own pid, while running; the daemon configs nats-K.conf,
# m5s-a.yaml, m5s-b.yaml, m5-aanf.yaml), log/ (one log per daemon), nats-1/..nats-3/
# (JetStream stores), m5s-a/, m5s-b/ (each node's local database), demo/ (ue1.yaml, ue2.yaml).
#
# Ports (all on 127.0.0.1; environment variables, all optional):
#   M5_NATS_PORT        NATS client port of node 1; nodes 2 and 3 use the next two (default 4222)
#   M5_NATS_ROUTE_PORT  NATS cluster route port of node 1, then +1, +2 (default 6222)
#   M5_NATS_MON_PORT    NATS monitoring port (/healthz, /jsz) of node 1, then +1, +2 (default 8222)
#   M5_AANF_PORT, M5_AANF_MGMT   m5-aanf (default 7443, 9091), as make run
#   M5_UE_PORT, M5_NORTH_PORT, M5_MGMT_PORT        m5s node A (default 5684, 8443, 9090)
#   M5_B_UE_PORT, M5_B_NORTH_PORT, M5_B_MGMT_PORT  m5s node B (default 5784, 8543, 9190)
#   M5_RUN_DIR          where ./var lives; default: the repository root
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/run-lib.sh
source "$REPO/tools/run-lib.sh"
# shellcheck source=tools/nats-conf.sh
source "$REPO/tools/nats-conf.sh"
run_reexec_sigint "$0" "$@"
RUN_NAME=run-cluster
# shellcheck disable=SC2016 # backquotes as text
RUN_WHAT='`make run-cluster` (tools/run-cluster.sh)'
PID_DIR=var/cluster/run
NODES=(a b)
NATS_N=3

BUILD=${1:?usage: tools/run-cluster.sh BUILD_DIR}
CALLER_DIR=$PWD
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || {
  echo "$RUN_NAME: $BUILD/bin does not exist; build first (make build)" >&2
  exit 1
}
run_check_bin m5-aanf m5s m5ctl m5c
NATS_SERVER=$(command -v nats-server || true)
[[ -n $NATS_SERVER || ! -x /usr/sbin/nats-server ]] || NATS_SERVER=/usr/sbin/nats-server
if [[ -z $NATS_SERVER ]]; then
  echo "$RUN_NAME: nats-server is missing; install it: apt-get install nats-server (make deps)" >&2
  exit 1
fi
RUN_DIR=${M5_RUN_DIR:-$REPO}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
cd "$RUN_DIR"

# nats_port_var NAME DEFAULT I: node I's port (1..3): the base from NAME, plus I - 1.
nats_port_var() {
  local base
  base=$(port_var "$1" "$2")
  if ((base + NATS_N - 1 > 65535)); then
    echo "$RUN_NAME: $1=$base leaves no room for $NATS_N ports" >&2
    exit 2
  fi
  echo "$((base + $3 - 1))"
}
AANF_PORT=$(port_var M5_AANF_PORT 7443)
AANF_MGMT=$(port_var M5_AANF_MGMT 9091)
declare -A UE_PORT=([a]=$(port_var M5_UE_PORT 5684) [b]=$(port_var M5_B_UE_PORT 5784))
declare -A NORTH_PORT=([a]=$(port_var M5_NORTH_PORT 8443) [b]=$(port_var M5_B_NORTH_PORT 8543))
declare -A MGMT_PORT=([a]=$(port_var M5_MGMT_PORT 9090) [b]=$(port_var M5_B_MGMT_PORT 9190))
declare -A NATS_PORT=() NATS_ROUTE=() NATS_MON=()
NATS_URLS=()
for ((k = 1; k <= NATS_N; k++)); do
  NATS_PORT[$k]=$(nats_port_var M5_NATS_PORT 4222 "$k")
  NATS_ROUTE[$k]=$(nats_port_var M5_NATS_ROUTE_PORT 6222 "$k")
  NATS_MON[$k]=$(nats_port_var M5_NATS_MON_PORT 8222 "$k")
  NATS_URLS+=("nats://127.0.0.1:${NATS_PORT[$k]}")
  EXE_OF[nats-$k]=$NATS_SERVER
  STOP_SIG[nats-$k]=INT # nats-server's clean shutdown exits 0 on SIGINT (1 on SIGTERM)
done
for n in "${NODES[@]}"; do EXE_OF[m5s-$n]=$BIN/m5s; done
AANF_URL=https://localhost:$AANF_PORT

umask 077
mkdir -p var/cluster/run var/cluster/log var/cluster/demo
LOG=var/cluster/log
run_check_not_running m5s-b m5s-a m5-aanf nats-3 nats-2 nats-1
trap on_signal INT TERM HUP

# Another process on one of our TCP ports would answer our health checks: refuse to start,
# naming the port (the NATS ones by node: M5_NATS_PORT+1 is node 2's).
PORT_OF=([M5_AANF_PORT]=$AANF_PORT [M5_AANF_MGMT]=$AANF_MGMT
  [M5_UE_PORT]=${UE_PORT[a]} [M5_NORTH_PORT]=${NORTH_PORT[a]} [M5_MGMT_PORT]=${MGMT_PORT[a]}
  [M5_B_UE_PORT]=${UE_PORT[b]} [M5_B_NORTH_PORT]=${NORTH_PORT[b]} [M5_B_MGMT_PORT]=${MGMT_PORT[b]})
for ((k = 1; k <= NATS_N; k++)); do
  sfx=
  ((k == 1)) || sfx="+$((k - 1))"
  PORT_OF[M5_NATS_PORT$sfx]=${NATS_PORT[$k]}
  PORT_OF[M5_NATS_ROUTE_PORT$sfx]=${NATS_ROUTE[$k]}
  PORT_OF[M5_NATS_MON_PORT$sfx]=${NATS_MON[$k]}
done
run_check_ports

# 1. The development PKI (as make run).
run_pki

# 2. The NATS cluster: one config per node (all three routes in each: a node ignores its own),
# checked before any starts; JetStream ready = /healthz 200 on every node (60 s: a first
# start elects a meta leader once all three run).
routes=()
for ((k = 1; k <= NATS_N; k++)); do routes+=("${NATS_ROUTE[$k]}"); done
for ((k = 1; k <= NATS_N; k++)); do
  mkdir -p "var/cluster/nats-$k"
  nats_conf "var/cluster/run/nats-$k.conf" "nats-$k" "${NATS_PORT[$k]}" "${NATS_MON[$k]}" \
    "$RUN_DIR/var/cluster/nats-$k" m5cluster "${NATS_ROUTE[$k]}" "${routes[@]}" ||
    { echo "$RUN_NAME: stopping: a NATS config is not valid" >&2; exit 1; }
done
for ((k = 1; k <= NATS_N; k++)); do
  start "nats-$k" "$LOG/nats-$k.log" -c "var/cluster/run/nats-$k.conf"
done
for ((k = 1; k <= NATS_N; k++)); do
  wait_healthy "nats-$k" "${PID_OF[nats-$k]}" "${NATS_MON[$k]}" "$LOG/nats-$k.log" 60
done

# 3. m5-aanf, on its usual ports as under make run (a config only when a port is overridden).
aanf_args=()
if [[ -n ${M5_AANF_PORT:-} || -n ${M5_AANF_MGMT:-} ]]; then
  printf 'listen: {host: 127.0.0.1, port: %s}\nmgmt: {host: 127.0.0.1, port: %s}\n' \
    "$AANF_PORT" "$AANF_MGMT" >var/cluster/run/m5-aanf.yaml
  aanf_args=(--config var/cluster/run/m5-aanf.yaml)
fi
start m5-aanf "$LOG/m5-aanf.log" "${aanf_args[@]}"
wait_healthy m5-aanf "${PID_OF[m5-aanf]}" "$AANF_MGMT" "$LOG/m5-aanf.log"

# 4. The two m5s nodes, A then B (A writes the shared admin token at its first start). Each
# has its own local database; messages, registrations and bindings are in the cluster
# (replicas 3). 60 s for /healthz: a first start creates the streams and buckets (each R3
# asset takes about a second to elect its leader).
servers=$(
  IFS=,
  echo "${NATS_URLS[*]}"
)
servers=${servers//,/, }
for n in "${NODES[@]}"; do
  mkdir -p "var/cluster/m5s-$n"
  cat >"var/cluster/run/m5s-$n.yaml" <<EOF
# m5s node $n of $RUN_WHAT, written on every run.
ue: {host: 127.0.0.1, port: ${UE_PORT[$n]}}
mgmt: {host: 127.0.0.1, port: ${MGMT_PORT[$n]}, token_file: var/m5s/admin.token}
north: {host: 127.0.0.1, port: ${NORTH_PORT[$n]}}
aanf: {url: $AANF_URL}
db: {path: var/cluster/m5s-$n/m5s.db}
store: {backend: jetstream, js: {servers: [$servers], replicas: $NATS_N}}
node: {name: $n}
EOF
  start "m5s-$n" "$LOG/m5s-$n.log" --config "var/cluster/run/m5s-$n.yaml"
  wait_healthy "m5s-$n" "${PID_OF[m5s-$n]}" "${MGMT_PORT[$n]}" "$LOG/m5s-$n.log" 60
done

# 5. The demo subscribers through node A's admin API; ue1's client talks to node A over TLS,
# ue2's to node B over DTLS, so the demo message crosses nodes.
declare -A DEMO_NODE=([ue1]=a [ue2]=b)
for ue in "${DEMO_UES[@]}"; do
  n=${DEMO_NODE[$ue]}
  provision_demo_ue "$ue" "$AANF_URL" "http://127.0.0.1:${MGMT_PORT[a]}" \
    "${DEMO_SCHEME[$ue]}://localhost:${UE_PORT[$n]}" "var/cluster/demo/$ue.yaml" "$LOG/m5s-a.log"
done

M5C=$(disp "$BIN/m5c")
UE1=$(disp "$RUN_DIR/var/cluster/demo/ue1.yaml")
UE2=$(disp "$RUN_DIR/var/cluster/demo/ue2.yaml")
echo "READY nats 127.0.0.1:${NATS_PORT[1]}-${NATS_PORT[$NATS_N]} (monitoring" \
  "http://127.0.0.1:${NATS_MON[1]}/jsz); m5s node A 127.0.0.1:${UE_PORT[a]} (admin" \
  "http://127.0.0.1:${MGMT_PORT[a]}), node B 127.0.0.1:${UE_PORT[b]} (admin" \
  "http://127.0.0.1:${MGMT_PORT[b]}); demo configs $UE1 (ue1 on A, TLS) $UE2 (ue2 on B, DTLS);" \
  "receive: $M5C --config $UE2 listen; send: $M5C --config $UE1 send --to ue:ue2 --payload hi;" \
  "logs: $(disp "$RUN_DIR/var/cluster/log")/; Ctrl-C stops"

# 6. Wait (run_wait_all): Ctrl-C stops every daemon, m5s nodes first; a daemon that exits is a
# failure.
run_wait_all
