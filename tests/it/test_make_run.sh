#!/usr/bin/env bash
# `make run` (tools/run-dev.sh, architecture §9) end to end, in this test's scratch directory
# (M5_RUN_DIR) on random ports: READY after the AAnF, m5s, the demo subscribers, Mosquitto and
# the MQTT gateway with its device mq1 are up; the two m5c commands printed in the READY line
# work as printed (ue2 listens over DTLS, ue1 sends over TLS); the READY line names mq1's
# credentials file (mode 0600) and the broker's port, and with them the device mq1 gets what
# ue1 sends to ue:mq1 (mosquitto_sub, MQTT 5) and what it publishes reaches ue2; SIGINT stops
# the four daemons (m5gw, Mosquitto, m5s, m5-aanf, in that order, each exit 0) and run-dev.sh
# exits 0, leaving no process. A taken MQTT port makes run-dev.sh refuse to start, naming
# M5_MQTT_PORT. A second run keeps the PKI and the device's password and provisions the demo
# subscribers again; when a daemon dies, run-dev.sh prints its log tail, stops the others and
# exits 1.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

RUN_DEV=$M5_SRC/tools/run-dev.sh
OUT=$M5_TMP/run-dev.out
M5S_LOG=$M5_TMP/var/log/m5s.log
AANF_LOG=$M5_TMP/var/log/m5-aanf.log
GW_LOG=$M5_TMP/var/log/m5gw.log
RD_PID=
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# is_ours PID: the process is one of this build's daemons, or a Mosquitto.
is_ours() {
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [[ $exe == "$M5_BIN"/* || $exe == "$MOSQUITTO" ]]
}

# Our daemons run in sessions of their own (run-dev.sh starts them with setsid): on any exit,
# stop those still running by the pids run-dev.sh recorded, then lib.sh's cleanup.
stop_leftovers() {
  local f p
  for f in "$M5_TMP"/var/run/*.pid; do
    [[ -f $f ]] || continue
    p=$(<"$f")
    [[ $p =~ ^[0-9]+$ ]] && is_ours "$p" && kill -KILL "$p" 2>/dev/null
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

# daemons_here: pids of the daemons of this build (m5s, m5-aanf, m5gw) and of Mosquittos
# whose working directory is ours.
daemons_here() {
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    is_ours "$p" || continue
    [[ $(readlink "$d/cwd" 2>/dev/null) == "$M5_TMP" ]] && echo "$p"
  done
  return 0
}

# start_run_dev: run-dev.sh in the background on fresh random ports (MQ_PORT: the broker's);
# waits for READY (90 s: the first run creates the PKI). Sets RD_PID and READY_LINE.
start_run_dev() {
  : >"$OUT"
  ports=()
  local p
  while ((${#ports[@]} < 8)); do
    p=$(pick_port)
    [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
  done
  MQ_PORT=${ports[5]}
  M5_RUN_DIR=$M5_TMP M5_AANF_PORT=${ports[0]} M5_AANF_MGMT=${ports[1]} \
    M5_UE_PORT=${ports[2]} M5_MGMT_PORT=${ports[3]} M5_NORTH_PORT=${ports[4]} \
    M5_MQTT_PORT=$MQ_PORT M5_GW_PORT=${ports[6]} M5_GW_MGMT=${ports[7]} \
    "$RUN_DEV" "$M5_BIN/.." >"$OUT" 2>&1 &
  RD_PID=$!
  track_pid "$RD_PID"
  wait_file_line "$OUT" '^READY' 90 "$RD_PID" || rd_fail "no READY line within 90 s"
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

DAEMONS=(m5gw mosquitto m5s m5-aanf) # the order in which Ctrl-C stops them
declare -A PID_OF=()
for d in "${DAEMONS[@]}"; do
  [[ -f $M5_TMP/var/run/$d.pid ]] || rd_fail "no var/run/$d.pid"
  PID_OF[$d]=$(<"$M5_TMP/var/run/$d.pid")
  kill -0 "${PID_OF[$d]}" 2>/dev/null || rd_fail "$d of var/run/$d.pid is not running"
  is_ours "${PID_OF[$d]}" || rd_fail "var/run/$d.pid is not one of our daemons"
done
[[ $(daemons_here | wc -l) -eq 4 ]] || rd_fail "want 4 daemons in $M5_TMP: $(daemons_here)"

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

# The MQTT device mq1: its credentials file as the READY line names it (relative to this
# directory, where the user ran `make run`), mode 0600, and the broker's port.
MQ1_FILE=$(sed -n 's/.*; MQTT device mq1: \([^ ]*\) (broker 127\.0\.0\.1:\([0-9]*\)); receive: .*/\1/p' <<<"$READY_LINE")
MQ1_PORT=$(sed -n 's/.*; MQTT device mq1: \([^ ]*\) (broker 127\.0\.0\.1:\([0-9]*\)); receive: .*/\2/p' <<<"$READY_LINE")
[[ -n $MQ1_FILE && $MQ1_PORT == "$MQ_PORT" ]] ||
  rd_fail "the READY line does not name mq1's credentials and the broker on $MQ_PORT: $READY_LINE"
[[ $MQ1_FILE == var/demo/mq1.mqtt && -f $MQ1_FILE ]] || rd_fail "no credentials file $MQ1_FILE"
[[ $(stat -c %a "$MQ1_FILE") == 600 ]] || rd_fail "$MQ1_FILE has mode $(stat -c %a "$MQ1_FILE"), want 600"
grep -qx 'username=mq1' "$MQ1_FILE" || rd_fail "$MQ1_FILE: no username=mq1 line"
MQ1_PW=$(sed -n 's/^password=//p' "$MQ1_FILE")
[[ -n $MQ1_PW ]] || rd_fail "$MQ1_FILE: no password= line"
MQ1_SUM=$(sha256sum <"$MQ1_FILE")
mq1_sub() { # mosquitto_sub as the device mq1 on its inbox (persistent session mq1, QoS 1)
  timeout 40 mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -u mq1 -P "$MQ1_PW" -i mq1 -c -q 1 \
    -V mqttv5 -t msgin5g/mq1/in "$@"
}

# ue1 -> mq1: mq1's session subscribes first (-E: exits once the broker acknowledged), so
# the gateway's publish has a subscriber whether or not the device's client below is already
# connected; then the device listens, ue1 sends with m5c, the device prints what it got.
mq1_sub -E >"$M5_TMP/sub.out" 2>&1 || rd_fail "mosquitto_sub as mq1 failed: $(cat "$M5_TMP/sub.out")"
mq1_sub -C 1 -W 30 -F '%t|%P|%p' >"$M5_TMP/sub.out" 2>&1 &
SUB_PID=$!
track_pid "$SUB_PID"
rc=0
timeout 30 "$M5_BIN/m5c" --config var/demo/ue1.yaml send --to ue:mq1 --payload 'hello mq1' \
  >"$M5_TMP/send-mq1.out" 2>&1 || rc=$?
[[ $rc -eq 0 ]] || rd_fail "send to ue:mq1 exited $rc: $(cat "$M5_TMP/send-mq1.out")"
MQ1_MSGID=$(sed -n 's/.*"msgId":"\([^"]*\)".*/\1/p' "$M5_TMP/send-mq1.out")
[[ -n $MQ1_MSGID ]] || rd_fail "send to ue:mq1: no msgId: $(cat "$M5_TMP/send-mq1.out")"
wait_pid_rc "$SUB_PID" 35
[[ $WAIT_RC -eq 0 ]] ||
  rd_fail "mq1 got nothing (mosquitto_sub exited $WAIT_RC): $(cat "$M5_TMP/sub.out"; tail -5 "$GW_LOG")"
[[ $(cat "$M5_TMP/sub.out") == "msgin5g/mq1/in|oriAddr:UE:ue1 msgId:$MQ1_MSGID|hello mq1" ]] ||
  rd_fail "mq1's inbox: want ue1's 'hello mq1' (msgId $MQ1_MSGID): $(cat "$M5_TMP/sub.out")"

# mq1 -> ue2: the device publishes to its outbox; ue2's m5c listen gets it from m5s.
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQ_PORT" -u mq1 -P "$MQ1_PW" -q 1 \
  -t msgin5g/mq1/out/UE/ue2 -m 'hello ue2' >"$M5_TMP/pub.out" 2>&1 ||
  rd_fail "mosquitto_pub as mq1 failed: $(cat "$M5_TMP/pub.out")"
timeout 40 "$M5_BIN/m5c" --config var/demo/ue2.yaml listen --count 1 --timeout 30 \
  >"$M5_TMP/listen-mq1.out" 2>&1 || rd_fail "ue2 got nothing from mq1: $(cat "$M5_TMP/listen-mq1.out"; tail -5 "$GW_LOG")"
MSG=$(grep '"msgType":"MSG"' "$M5_TMP/listen-mq1.out") || rd_fail "listen: no MSG: $(cat "$M5_TMP/listen-mq1.out")"
for want in '"oriAddr":{"addrType":"UE","addr":"mq1"}' '"destAddr":{"addrType":"UE","addr":"ue2"}' \
  '"payloadText":"hello ue2"'; do
  [[ $MSG == *"$want"* ]] || rd_fail "ue2's message from mq1: want $want in $MSG"
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

# Ctrl-C: run-dev.sh stops m5gw, Mosquitto, m5s and m5-aanf in that order, each exits 0 (run-dev
# gives each 5 s, then kills it and reports a non-zero exit), run-dev.sh exits 0 and nothing
# is left running. (The bound here is the sum of those 5 s and some; the time is logged.)
t0=$(now_ms)
kill -INT "$RD_PID"
wait_pid_rc "$RD_PID" 25
[[ $WAIT_RC -eq 0 ]] || rd_fail "run-dev.sh exited $WAIT_RC after SIGINT, want 0"
echo "run-dev.sh stopped the four daemons $(($(now_ms) - t0)) ms after SIGINT"
RD_PID=
for d in "${DAEMONS[@]}"; do
  grep -q "^run-dev: $d stopped (exit 0)$" "$OUT" || rd_fail "$d did not stop with exit 0"
done
ORDER=$(sed -n 's/^run-dev: \([^ ]*\) stopped (exit.*/\1/p' "$OUT" | tr '\n' ' ')
[[ $ORDER == "${DAEMONS[*]} " ]] || rd_fail "stopped in the order $ORDER, want ${DAEMONS[*]}"
for d in "${DAEMONS[@]}"; do
  ! kill -0 "${PID_OF[$d]}" 2>/dev/null || rd_fail "$d (${PID_OF[$d]}) still runs after run-dev.sh exited"
done
[[ -z $(daemons_here) ]] || rd_fail "daemons left in $M5_TMP: $(daemons_here)"
[[ -z $(ls "$M5_TMP"/var/run/*.pid 2>/dev/null) ]] || rd_fail "pid files left: $(ls "$M5_TMP"/var/run)"
grep -q 'SIGTERM: draining' "$M5S_LOG" || rd_fail "m5s was not stopped by SIGTERM"
grep -q 'SIGTERM: draining' "$AANF_LOG" || rd_fail "m5-aanf was not stopped by SIGTERM"

# ---- a taken MQTT port: run-dev.sh refuses, naming it, and starts nothing -------------------
# (the other ports: those of the run above, free again)
pick_ports TAKEN
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("listening", flush=True); time.sleep(120)' \
  "$TAKEN" >"$M5_TMP/taker.out" 2>&1 &
TAKER_PID=$!
track_pid "$TAKER_PID"
wait_file_line "$M5_TMP/taker.out" '^listening' 10 "$TAKER_PID" ||
  fail "could not hold port $TAKEN: $(cat "$M5_TMP/taker.out")"
rc=0
M5_RUN_DIR=$M5_TMP M5_AANF_PORT=${ports[0]} M5_AANF_MGMT=${ports[1]} M5_UE_PORT=${ports[2]} \
  M5_MGMT_PORT=${ports[3]} M5_NORTH_PORT=${ports[4]} M5_MQTT_PORT=$TAKEN M5_GW_PORT=${ports[6]} \
  M5_GW_MGMT=${ports[7]} timeout 30 "$RUN_DEV" "$M5_BIN/.." >"$OUT" 2>&1 || rc=$?
[[ $rc -eq 1 ]] || rd_fail "run-dev.sh exited $rc with the MQTT port taken, want 1"
grep -q "the MQTT port 127.0.0.1:$TAKEN/tcp is already in use.*M5_MQTT_PORT" "$OUT" ||
  rd_fail "run-dev.sh did not say the MQTT port is taken: $(cat "$OUT")"
grep -q '^READY' "$OUT" && rd_fail "READY with the MQTT port taken"
[[ -z $(daemons_here) ]] || rd_fail "daemons started with the MQTT port taken: $(daemons_here)"
kill -KILL "$TAKER_PID" 2>/dev/null || true
wait "$TAKER_PID" 2>/dev/null || true

# ---- second run: PKI and mq1's password kept, subscribers provisioned again; a daemon dies --
start_run_dev
[[ $(sha256sum "$M5_TMP/var/pki/ca.crt") == "$CA_SUM" ]] || rd_fail "the second run replaced the PKI"
[[ $(sha256sum <"$M5_TMP/var/demo/mq1.mqtt") == "$MQ1_SUM" ]] || rd_fail "the second run changed mq1's credentials"
grep -q 'ue1: binding updated' "$M5S_LOG" || rd_fail "ue1 was not provisioned again"
for d in "${DAEMONS[@]}"; do PID_OF[$d]=$(<"$M5_TMP/var/run/$d.pid"); done
kill -KILL "${PID_OF[m5s]}"
wait_pid_rc "$RD_PID" 25
[[ $WAIT_RC -eq 1 ]] || rd_fail "run-dev.sh exited $WAIT_RC after m5s died, want 1"
RD_PID=
grep -q 'm5s exited unexpectedly' "$OUT" || rd_fail "run-dev.sh did not report the dead m5s"
grep -q 'ready: MSGin5G-1' "$OUT" || rd_fail "run-dev.sh did not print m5s's log tail"
for d in m5gw mosquitto m5-aanf; do
  ! kill -0 "${PID_OF[$d]}" 2>/dev/null || rd_fail "$d still runs after m5s died"
done
[[ -z $(daemons_here) ]] || rd_fail "daemons left in $M5_TMP: $(daemons_here)"

echo "PASS test_make_run"
