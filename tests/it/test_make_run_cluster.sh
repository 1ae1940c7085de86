#!/usr/bin/env bash
# `make run-cluster` (tools/run-cluster.sh, docs/scale-out.md) end to end, in this test's
# scratch directory (M5_RUN_DIR) on random ports: a taken port (node B's management port)
# is refused naming M5_B_MGMT_PORT before anything starts; then READY (one line) after the
# three nats-server nodes, m5-aanf and the m5s nodes A and B are up; the six pid files in
# var/cluster/run hold the daemons' own live pids; the NATS nodes form one JetStream cluster
# of 3 with a meta leader; both m5s nodes answer /healthz on their own ports and read the one
# admin token (node B's admin API accepts the token file node A wrote, and node B sees the
# demo bindings provisioned through node A); SIGINT stops m5s-b, m5s-a, m5-aanf, nats-3, nats-2,
# nats-1 in that order, each exit 0, run-cluster.sh exits 0 and leaves no process and no pid
# file. A second run keeps the PKI and the NATS stores; kill -9 of node B makes run-cluster.sh
# print its log tail, stop the others and exit 1.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

RUN_CLUSTER=$M5_SRC/tools/run-cluster.sh
OUT=$M5_TMP/run-cluster.out
CL=$M5_TMP/var/cluster
RC_PID=
NATS_EXE=$(readlink -f "$(command -v nats-server)") || fail "nats-server is not installed (make deps)"
DAEMONS=(m5s-b m5s-a m5-aanf nats-3 nats-2 nats-1) # the order in which Ctrl-C stops them

# is_ours PID: the process is one of this build's daemons or a nats-server.
is_ours() {
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [[ $exe == "$M5_BIN"/* || $exe == "$NATS_EXE" ]]
}

# The daemons run in sessions of their own (setsid): on any exit, stop those still running by
# the pids run-cluster.sh recorded, then lib.sh's cleanup.
stop_leftovers() {
  local f p
  for f in "$CL"/run/*.pid; do
    [[ -f $f ]] || continue
    p=$(<"$f")
    [[ $p =~ ^[0-9]+$ ]] && is_ours "$p" && kill -KILL "$p" 2>/dev/null
  done
  cleanup
}
trap stop_leftovers EXIT

rc_fail() {
  echo "--- run-cluster.sh output ---" >&2
  cat "$OUT" >&2 || true
  [[ -z $RC_PID ]] || kill -TERM "$RC_PID" 2>/dev/null || true
  fail "$@"
}

# daemons_here: pids of this build's daemons and of nats-servers whose working directory is
# ours.
daemons_here() {
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    is_ours "$p" || continue
    [[ $(readlink "$d/cwd" 2>/dev/null) == "$M5_TMP" ]] && echo "$p"
  done
  return 0
}

# pick_run VAR: the first of 3 consecutive free ports (the three NATS nodes'), none of them
# already in PORTS; all three are added to PORTS.
pick_run() {
  local p q _ ok
  for _ in $(seq 1 50); do
    p=$(pick_port)
    ok=1
    for q in "$p" $((p + 1)) $((p + 2)); do
      [[ " ${PORTS[*]} " != *" $q "* ]] || ok=0
      ! (exec 3<>"/dev/tcp/127.0.0.1/$q") 2>/dev/null || ok=0
    done
    if ((ok)); then
      PORTS+=("$p" $((p + 1)) $((p + 2)))
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  fail "no 3 consecutive free ports found"
}

# pick_all: fresh random ports for every daemon (ENV: the variables for run-cluster.sh).
pick_all() {
  PORTS=()
  local v p
  declare -gA P=()
  for v in M5_AANF_PORT M5_AANF_MGMT M5_UE_PORT M5_NORTH_PORT M5_MGMT_PORT M5_B_UE_PORT \
    M5_B_NORTH_PORT M5_B_MGMT_PORT; do
    p=$(pick_port)
    while [[ " ${PORTS[*]} " == *" $p "* ]]; do p=$(pick_port); done
    PORTS+=("$p")
    P[$v]=$p
  done
  for v in M5_NATS_PORT M5_NATS_ROUTE_PORT M5_NATS_MON_PORT; do
    pick_run "P[$v]"
  done
  ENV=(M5_RUN_DIR="$M5_TMP")
  for v in "${!P[@]}"; do ENV+=("$v=${P[$v]}"); done
}

# start_cluster: run-cluster.sh in the background on fresh random ports; waits for READY (240
# s: the first run creates the PKI, three NATS nodes elect their leaders and m5s creates its
# R3 streams and buckets, under sanitizers on loaded cores). Sets RC_PID and READY_LINE.
start_cluster() {
  : >"$OUT"
  pick_all
  local t0
  t0=$(now_ms)
  env "${ENV[@]}" "$RUN_CLUSTER" "$M5_BIN/.." >"$OUT" 2>&1 &
  RC_PID=$!
  track_pid "$RC_PID"
  wait_file_line "$OUT" '^READY' 240 "$RC_PID" || rc_fail "no READY line within 240 s"
  echo "run-cluster.sh READY $(($(now_ms) - t0)) ms after its start"
  [[ $(grep -c '^READY' "$OUT") -eq 1 ]] || rc_fail "more than one READY line"
  READY_LINE=$(grep '^READY' "$OUT")
}

# ---- a taken port: refused, naming its variable, nothing started --------------------------
pick_all
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("listening", flush=True); time.sleep(120)' \
  "${P[M5_B_MGMT_PORT]}" >"$M5_TMP/taker.out" 2>&1 &
TAKER_PID=$!
track_pid "$TAKER_PID"
wait_file_line "$M5_TMP/taker.out" '^listening' 10 "$TAKER_PID" ||
  fail "could not hold port ${P[M5_B_MGMT_PORT]}: $(cat "$M5_TMP/taker.out")"
rc=0
env "${ENV[@]}" timeout 30 "$RUN_CLUSTER" "$M5_BIN/.." >"$OUT" 2>&1 || rc=$?
[[ $rc -eq 1 ]] || rc_fail "run-cluster.sh exited $rc with node B's management port taken, want 1"
grep -q "127.0.0.1:${P[M5_B_MGMT_PORT]}/tcp (M5_B_MGMT_PORT) is already in use" "$OUT" ||
  rc_fail "run-cluster.sh did not name M5_B_MGMT_PORT: $(cat "$OUT")"
[[ -z $(daemons_here) ]] || rc_fail "daemons started with a port taken: $(daemons_here)"
kill -KILL "$TAKER_PID" 2>/dev/null || true
wait "$TAKER_PID" 2>/dev/null || true

# ---- first run ------------------------------------------------------------------------------
start_cluster
[[ -f $M5_TMP/var/pki/ca.crt ]] || rc_fail "no dev PKI in \$M5_RUN_DIR/var/pki"
CA_SUM=$(sha256sum "$M5_TMP/var/pki/ca.crt")

declare -A PID_OF=()
for d in "${DAEMONS[@]}"; do
  f=$CL/run/$d.pid
  [[ -f $f ]] || rc_fail "no var/cluster/run/$d.pid"
  PID_OF[$d]=$(<"$f")
  kill -0 "${PID_OF[$d]}" 2>/dev/null || rc_fail "$d of $f is not running"
  want=$M5_BIN/${d%-[ab]}
  [[ $d == nats-* ]] && want=$NATS_EXE
  [[ $(readlink "/proc/${PID_OF[$d]}/exe") == "$want" ]] ||
    rc_fail "$f: pid ${PID_OF[$d]} is $(readlink "/proc/${PID_OF[$d]}/exe"), want $want"
done
[[ $(daemons_here | wc -l) -eq 6 ]] || rc_fail "want 6 daemons in $M5_TMP: $(daemons_here)"

# One JetStream cluster of 3 with a meta leader, seen from each node.
for k in 1 2 3; do
  mon=$((P[M5_NATS_MON_PORT] + k - 1))
  curl -sf --max-time 5 "http://127.0.0.1:$mon/jsz" >"$M5_TMP/jsz$k.json" ||
    rc_fail "nats-$k: no /jsz on $mon"
  python3 -c 'import json, sys
m = json.load(open(sys.argv[1])).get("meta_cluster") or {}
sys.exit(0 if m.get("cluster_size") == 3 and m.get("leader") else 1)' "$M5_TMP/jsz$k.json" ||
    rc_fail "nats-$k: not in a JetStream cluster of 3 with a leader: $(cat "$M5_TMP/jsz$k.json")"
done

# Both m5s nodes: /healthz on their own ports; one admin token (m5ctl's default path) read by
# both; node B sees the bindings provisioned through node A.
for v in M5_MGMT_PORT M5_B_MGMT_PORT; do
  curl -sf --max-time 5 "http://127.0.0.1:${P[$v]}/healthz" >/dev/null || rc_fail "no /healthz on $v"
done
TOKEN_FILE=$M5_TMP/var/m5s/admin.token
[[ -s $TOKEN_FILE ]] || rc_fail "no admin token at var/m5s/admin.token"
grep -q "token_file: var/m5s/admin.token" "$CL/run/m5s-b.yaml" || rc_fail "node B has another token file"
for ue in ue1 ue2; do
  st=$(curl -s --max-time 10 -H "authorization: Bearer $(<"$TOKEN_FILE")" -o "$M5_TMP/b-$ue.json" \
    -w '%{http_code}' "http://127.0.0.1:${P[M5_B_MGMT_PORT]}/admin/v1/bindings/$ue")
  [[ $st == 200 ]] || rc_fail "node B: GET binding $ue: HTTP $st $(cat "$M5_TMP/b-$ue.json")"
done
for ue in ue1 ue2; do
  f=$CL/demo/$ue.yaml
  [[ -f $f && $(stat -c %a "$f") == 600 ]] || rc_fail "$f missing or not mode 600"
done
grep -q "^server: coaps+tcp://localhost:${P[M5_UE_PORT]}$" "$CL/demo/ue1.yaml" || rc_fail "ue1 is not on node A over TLS"
grep -q "^server: coaps://localhost:${P[M5_B_UE_PORT]}$" "$CL/demo/ue2.yaml" || rc_fail "ue2 is not on node B over DTLS"
[[ $READY_LINE == *"receive: "*" listen; send: "*" send --to ue:ue2 --payload hi;"* ]] ||
  rc_fail "no m5c commands in the READY line: $READY_LINE"

# Ctrl-C: every daemon stopped by pid in the reverse order of the start, each exit 0.
t0=$(now_ms)
kill -INT "$RC_PID"
wait_pid_rc "$RC_PID" 60
[[ $WAIT_RC -eq 0 ]] || rc_fail "run-cluster.sh exited $WAIT_RC after SIGINT, want 0"
echo "run-cluster.sh stopped the six daemons $(($(now_ms) - t0)) ms after SIGINT"
RC_PID=
for d in "${DAEMONS[@]}"; do
  grep -q "^run-cluster: $d stopped (exit 0)$" "$OUT" || rc_fail "$d did not stop with exit 0"
  ! kill -0 "${PID_OF[$d]}" 2>/dev/null || rc_fail "$d (${PID_OF[$d]}) still runs"
done
ORDER=$(sed -n 's/^run-cluster: \([^ ]*\) stopped (exit.*/\1/p' "$OUT" | tr '\n' ' ')
[[ $ORDER == "${DAEMONS[*]} " ]] || rc_fail "stopped in the order $ORDER, want ${DAEMONS[*]}"
[[ -z $(daemons_here) ]] || rc_fail "daemons left in $M5_TMP: $(daemons_here)"
[[ -z $(ls "$CL"/run/*.pid 2>/dev/null) ]] || rc_fail "pid files left: $(ls "$CL"/run)"

# ---- second run: PKI and NATS stores kept; node B killed -----------------------------------
[[ -n $(ls -A "$CL/nats-1" 2>/dev/null) ]] || rc_fail "nats-1 has no store in var/cluster/nats-1"
start_cluster
[[ $(sha256sum "$M5_TMP/var/pki/ca.crt") == "$CA_SUM" ]] || rc_fail "the second run replaced the PKI"
for d in "${DAEMONS[@]}"; do PID_OF[$d]=$(<"$CL/run/$d.pid"); done
kill -KILL "${PID_OF[m5s-b]}"
wait_pid_rc "$RC_PID" 60
[[ $WAIT_RC -eq 1 ]] || rc_fail "run-cluster.sh exited $WAIT_RC after m5s-b died, want 1"
RC_PID=
grep -q 'm5s-b exited unexpectedly' "$OUT" || rc_fail "run-cluster.sh did not report the dead m5s-b"
for d in m5s-a m5-aanf nats-3 nats-2 nats-1; do
  ! kill -0 "${PID_OF[$d]}" 2>/dev/null || rc_fail "$d still runs after m5s-b died"
done
[[ -z $(daemons_here) ]] || rc_fail "daemons left in $M5_TMP: $(daemons_here)"

echo "PASS test_make_run_cluster"
