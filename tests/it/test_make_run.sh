#!/usr/bin/env bash
# `make run` (tools/run-dev.sh, architecture §9) end to end, in this test's scratch directory
# (M5_RUN_DIR) on random ports: READY after the AAnF, m5s and the demo subscribers are up; the
# two m5c commands printed in the READY line work as printed (ue2 listens over DTLS, ue1 sends
# over TLS); SIGINT stops both daemons (m5s first) and run-dev.sh exits 0 within 6 s, leaving
# no daemon. A second run keeps the PKI and provisions the demo subscribers again; when a
# daemon dies, run-dev.sh prints its log tail, stops the other one and exits 1.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

RUN_DEV=$M5_SRC/tools/run-dev.sh
OUT=$M5_TMP/run-dev.out
M5S_LOG=$M5_TMP/var/log/m5s.log
AANF_LOG=$M5_TMP/var/log/m5-aanf.log
RD_PID=

# Our daemons run in sessions of their own (run-dev.sh starts them with setsid): on any exit,
# stop those still running by the pids run-dev.sh recorded, then lib.sh's cleanup.
stop_leftovers() {
  local f p
  for f in "$M5_TMP"/var/run/*.pid; do
    [[ -f $f ]] || continue
    p=$(<"$f")
    [[ $p =~ ^[0-9]+$ && $(readlink "/proc/$p/exe" 2>/dev/null) == "$M5_BIN"/* ]] &&
      kill -KILL "$p" 2>/dev/null
  done
  cleanup
}
trap stop_leftovers EXIT

rd_fail() {
  echo "--- run-dev.sh output ---" >&2
  cat "$OUT" >&2 || true
  [[ -z $RD_PID ]] || kill -TERM "$RD_PID" 2>/dev/null || true
  m5s_fail "$@"
}

# daemons_here: pids of m5s/m5-aanf processes of this build whose working directory is ours.
daemons_here() {
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [[ $(readlink "$d/exe" 2>/dev/null) == "$M5_BIN"/m5* ]] || continue
    [[ $(readlink "$d/cwd" 2>/dev/null) == "$M5_TMP" ]] && echo "$p"
  done
  return 0
}

# start_run_dev: run-dev.sh in the background on fresh random ports; waits for READY (60 s:
# the first run creates the PKI). Sets RD_PID and READY_LINE.
start_run_dev() {
  : >"$OUT"
  ports=()
  local p
  while ((${#ports[@]} < 5)); do
    p=$(pick_port)
    [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
  done
  M5_RUN_DIR=$M5_TMP M5_AANF_PORT=${ports[0]} M5_AANF_MGMT=${ports[1]} \
    M5_UE_PORT=${ports[2]} M5_MGMT_PORT=${ports[3]} M5_NORTH_PORT=${ports[4]} \
    "$RUN_DEV" "$M5_BIN/.." >"$OUT" 2>&1 &
  RD_PID=$!
  track_pid "$RD_PID"
  wait_file_line "$OUT" '^READY' 60 "$RD_PID" || rd_fail "no READY line within 60 s"
  [[ $(grep -c '^READY' "$OUT") -eq 1 ]] || rd_fail "more than one READY line"
  READY_LINE=$(grep '^READY' "$OUT")
}

# ---- first run: the tour, then Ctrl-C -----------------------------------------------------
start_run_dev
[[ -f $M5_TMP/var/pki/ca.crt ]] || rd_fail "no dev PKI in \$M5_RUN_DIR/var/pki"
CA_SUM=$(sha256sum "$M5_TMP/var/pki/ca.crt")
for ue in ue1 ue2; do
  f=$M5_TMP/var/demo/$ue.yaml
  [[ -f $f ]] || rd_fail "$f missing"
  [[ $(stat -c %a "$f") == 600 ]] || rd_fail "$f has mode $(stat -c %a "$f"), want 600"
  grep -q "^ue-svc-id: $ue$" "$f" || rd_fail "$f: no ue-svc-id $ue: $(cat "$f")"
done
grep -q '^server: coaps+tcp://localhost:' "$M5_TMP/var/demo/ue1.yaml" || rd_fail "ue1 is not on TLS"
grep -q '^server: coaps://localhost:' "$M5_TMP/var/demo/ue2.yaml" || rd_fail "ue2 is not on DTLS"

LISTEN_CMD=$(sed -n 's/.*; receive: \(.*\); send: \(.*\); logs: .*/\1/p' <<<"$READY_LINE")
SEND_CMD=$(sed -n 's/.*; receive: \(.*\); send: \(.*\); logs: .*/\2/p' <<<"$READY_LINE")
[[ $LISTEN_CMD == *" listen" && $SEND_CMD == *" send --to ue:ue2 --payload hi" ]] ||
  rd_fail "cannot find the m5c commands in the READY line: $READY_LINE"

AANF_PID=$(<"$M5_TMP/var/run/m5-aanf.pid")
M5S_PID=$(<"$M5_TMP/var/run/m5s.pid")
if ! kill -0 "$AANF_PID" || ! kill -0 "$M5S_PID"; then
  rd_fail "the daemons of var/run/*.pid are not running"
fi
[[ $(daemons_here | wc -l) -eq 2 ]] || rd_fail "want 2 daemons in $M5_TMP: $(daemons_here)"

# The commands exactly as printed (from this directory, where the user ran `make run`);
# listen gets --count 1 and a bound.
bash -c "exec $LISTEN_CMD --count 1 --timeout 30" >"$M5_TMP/listen.out" 2>&1 &
LISTEN_PID=$!
track_pid "$LISTEN_PID"
wait_file_line "$M5S_LOG" ': ue2: registered' 15 "$LISTEN_PID" ||
  rd_fail "ue2 did not register within 15 s: $(cat "$M5_TMP/listen.out")"
rc=0
timeout 30 bash -c "exec $SEND_CMD" >"$M5_TMP/send.out" 2>&1 || rc=$?
[[ $rc -eq 0 ]] || rd_fail "send exited $rc: $(cat "$M5_TMP/send.out")"
grep -q '"msgType":"MSGRESP"' "$M5_TMP/send.out" || rd_fail "send: no MSGRESP: $(cat "$M5_TMP/send.out")"
grep -q '"status"' "$M5_TMP/send.out" && rd_fail "send: not delivered: $(cat "$M5_TMP/send.out")"
wait_pid_rc "$LISTEN_PID" 15
[[ $WAIT_RC -eq 0 ]] || rd_fail "listen exited $WAIT_RC: $(cat "$M5_TMP/listen.out")"
MSG=$(grep '"msgType":"MSG"' "$M5_TMP/listen.out") || rd_fail "listen: no MSG: $(cat "$M5_TMP/listen.out")"
for want in '"oriAddr":{"addrType":"UE","addr":"ue1"}' '"destAddr":{"addrType":"UE","addr":"ue2"}' \
  '"payload":"aGk="' '"payloadText":"hi"'; do
  [[ $MSG == *"$want"* ]] || rd_fail "listen: want $want in $MSG"
done

# The AS side of the tour: docs/northbound.md's "Try it" commands exactly as written (only the
# default ports 9090 and 8443 swapped for this run's), from this directory.
TRY=$(awk '/^## Try it/{f=1} f&&/^```sh$/{c=1; next} c&&/^```$/{exit} c' "$M5_SRC/docs/northbound.md")
[[ $TRY == *"/oauth2/token"* ]] || rd_fail "no Try-it block in docs/northbound.md"
TRY=${TRY//:9090/:${ports[3]}}
TRY=${TRY//:8443/:${ports[4]}}
(cd "$M5_TMP" && timeout 60 bash -euo pipefail -c "$TRY") >"$M5_TMP/try.out" 2>&1 ||
  rd_fail "docs/northbound.md's Try-it commands failed: $(cat "$M5_TMP/try.out")"
grep -q 'HTTP/2 201' "$M5_TMP/try.out" || rd_fail "Try-it: the AS did not register: $(cat "$M5_TMP/try.out")"
grep -q '"msgId":"as1-1","status":"DELY_STORED"' "$M5_TMP/try.out" ||
  rd_fail "Try-it: the AS's message to ue2 was not stored: $(cat "$M5_TMP/try.out")"

# Ctrl-C: run-dev.sh exits 0 within 6 s, m5s stopped before the AAnF, nothing left running.
kill -INT "$RD_PID"
wait_pid_rc "$RD_PID" 6
[[ $WAIT_RC -eq 0 ]] || rd_fail "run-dev.sh exited $WAIT_RC after SIGINT, want 0 within 6 s"
RD_PID=
grep -q '^run-dev: m5s stopped (exit 0)$' "$OUT" || rd_fail "m5s did not stop with exit 0"
grep -q '^run-dev: m5-aanf stopped (exit 0)$' "$OUT" || rd_fail "m5-aanf did not stop with exit 0"
[[ $(grep -n 'stopped (exit' "$OUT" | head -1) == *m5s* ]] || rd_fail "the AAnF stopped before m5s"
for p in "$AANF_PID" "$M5S_PID"; do
  ! kill -0 "$p" 2>/dev/null || rd_fail "daemon $p still runs after run-dev.sh exited"
done
[[ -z $(daemons_here) ]] || rd_fail "daemons left in $M5_TMP: $(daemons_here)"
grep -q 'SIGTERM: draining' "$M5S_LOG" || rd_fail "m5s was not stopped by SIGTERM"
grep -q 'SIGTERM: draining' "$AANF_LOG" || rd_fail "m5-aanf was not stopped by SIGTERM"

# ---- second run: PKI kept, subscribers provisioned again; a daemon dies --------------------
start_run_dev
[[ $(sha256sum "$M5_TMP/var/pki/ca.crt") == "$CA_SUM" ]] || rd_fail "the second run replaced the PKI"
grep -q 'ue1: binding updated' "$M5S_LOG" || rd_fail "ue1 was not provisioned again"
M5S_PID=$(<"$M5_TMP/var/run/m5s.pid")
AANF_PID=$(<"$M5_TMP/var/run/m5-aanf.pid")
kill -KILL "$M5S_PID"
wait_pid_rc "$RD_PID" 10
[[ $WAIT_RC -eq 1 ]] || rd_fail "run-dev.sh exited $WAIT_RC after m5s died, want 1"
RD_PID=
grep -q 'm5s exited unexpectedly' "$OUT" || rd_fail "run-dev.sh did not report the dead m5s"
grep -q 'ready: MSGin5G-1' "$OUT" || rd_fail "run-dev.sh did not print m5s's log tail"
! kill -0 "$AANF_PID" 2>/dev/null || rd_fail "m5-aanf still runs after m5s died"
[[ -z $(daemons_here) ]] || rd_fail "daemons left in $M5_TMP: $(daemons_here)"

echo "PASS test_make_run"
