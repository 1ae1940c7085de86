# shellcheck shell=bash
# Helpers of the MQTT gateway tests (tests/gateway/mqtt_*.sh), sourced after tests/lib.sh:
# a real Mosquitto configured by tools/mqtt-broker-conf.sh on a random loopback port, the
# adapter in tests/gateway/mqtt_driver (commands through a FIFO, its record on DRV_OUT), and
# devices played by mosquitto_pub / mosquitto_sub (MQTT 3.1.1, or 5 with -V mqttv5).

BROKER_DIR=$M5_TMP/broker
BROKER_ARGS=()
MQ_LOG=$M5_TMP/mosquitto.log

# start_broker [DEVICES]: writes the broker's config (devices mq1 mq2 mq3 by default) on a free
# port (MQ_PORT, kept across restarts) and starts it (MQ_PID). BROKER_ARGS (an array) adds
# mqtt-broker-conf.sh options (--tls-cert ...).
start_broker() {
  local devices=${1:-mq1 mq2 mq3} _
  for _ in 1 2 3; do
    [[ -n ${MQ_PORT:-} ]] || pick_ports MQ_PORT
    "$M5_SRC/tools/mqtt-broker-conf.sh" --dir "$BROKER_DIR" --port "$MQ_PORT" \
      --devices "$devices" --autosave 1 "${BROKER_ARGS[@]}" 2>>"$MQ_LOG" || fail "mqtt-broker-conf.sh failed"
    mosquitto -c "$BROKER_DIR/mosquitto.conf" >>"$MQ_LOG" 2>&1 &
    MQ_PID=$!
    track_pid "$MQ_PID"
    wait_port_open "$MQ_PORT" "$MQ_PID" && return 0
    MQ_PORT=
  done
  fail "mosquitto did not start: $(tail -5 "$MQ_LOG")"
}

# wait_port_open PORT PID: until 127.0.0.1:PORT takes connections; 1 if PID died first / 10 s.
wait_port_open() {
  local i
  for ((i = 0; i < 100; i++)); do
    bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# stop_broker: SIGTERM (a graceful stop: Mosquitto saves its persistence file) and its exit.
stop_broker() {
  if ! kill -TERM "$MQ_PID" 2>/dev/null; then
    wait "$MQ_PID" 2>/dev/null && WAIT_RC=0 || WAIT_RC=$?
    fail "mosquitto was gone before its stop (exit status $WAIT_RC): $(tail -5 "$MQ_LOG")"
  fi
  wait_pid_rc "$MQ_PID" 10
  ((WAIT_RC != 124)) || fail "mosquitto did not stop within 10 s"
}

# restart_broker: stop_broker, then start_broker_again.
restart_broker() {
  stop_broker
  start_broker_again
}

# start_broker_again: the same config and port again (MQ_PID).
start_broker_again() {
  mosquitto -c "$BROKER_DIR/mosquitto.conf" >>"$MQ_LOG" 2>&1 &
  MQ_PID=$!
  track_pid "$MQ_PID"
  wait_port_open "$MQ_PORT" "$MQ_PID" || fail "mosquitto did not restart: $(tail -5 "$MQ_LOG")"
}

# dev_pw ID: the device's broker password (from the credentials file the tool wrote).
dev_pw() { sed -n 's/^password=//p' "$BROKER_DIR/$1.mqtt"; }

# dev_pub ID [mosquitto_pub args...]: publishes as device ID (QoS 1 unless args say otherwise).
dev_pub() {
  local id=$1
  shift
  timeout 10 mosquitto_pub -h 127.0.0.1 -p "$MQ_PORT" -u "$id" -P "$(dev_pw "$id")" -q 1 "$@"
}

# dev_sub_start ID OUT [args...]: a device's persistent subscriber (client id ID, clean
# session off, QoS 1) on its inbox in the background (SUB_PID), lines "topic|props|payload"
# (props: MQTT 5 user properties with -V mqttv5). The subscription is made first with -E (exit
# once the broker acknowledged it), so whatever is published after this returns is queued for
# the session even before the background client has connected.
dev_sub_start() {
  local id=$1 outf=$2
  shift 2
  timeout 10 mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -u "$id" -P "$(dev_pw "$id")" -i "$id" \
    -c -q 1 -t "msgin5g/$id/in" -E "$@" >>"$outf" 2>&1 || fail "mosquitto_sub -E ($id) failed"
  dev_sub_resume "$id" "$outf" "$@"
}

# (DEV_SUB_FMT: the subscriber's -F format, default "%t|%P|%p"; "%t|%P|%x" prints the payload
# in hex, for bytes that are not text.)
# dev_sub_resume ID OUT [args...]: the device's subscriber back on its persistent session (what
# the broker queued meanwhile arrives first), in the background (SUB_PID); returns once the
# broker logged its connection. (Also so that no signal reaches the background job before it
# has exec'd: a forked bash that is still a copy of this shell would run its EXIT trap.)
dev_sub_resume() {
  local id=$1 outf=$2 before i
  shift 2
  before=$(count_lines "$MQ_LOG" "New client connected from .* as $id \\(")
  mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -u "$id" -P "$(dev_pw "$id")" -i "$id" -c -q 1 \
    -t "msgin5g/$id/in" -F "${DEV_SUB_FMT:-%t|%P|%p}" "$@" >>"$outf" 2>&1 &
  SUB_PID=$!
  track_pid "$SUB_PID"
  for ((i = 0; i < 100; i++)); do
    (($(count_lines "$MQ_LOG" "New client connected from .* as $id \\(") > before)) && return 0
    kill -0 "$SUB_PID" 2>/dev/null || fail "mosquitto_sub ($id) exited: $(cat "$outf")"
    sleep 0.1
  done
  fail "mosquitto_sub ($id) did not connect within 10 s"
}

# dev_sub_stop: ends the background subscriber (its session stays on the broker).
dev_sub_stop() {
  kill -TERM "$SUB_PID" 2>/dev/null || true
  wait "$SUB_PID" 2>/dev/null || true
}

DRV_OUT=$M5_TMP/driver.out
DRV_ARGS=()
DRV_ERR=$M5_TMP/driver.err

# start_driver [extra YAML lines under mqtt:]: the adapter on its loop (DRV_PID), serving mq1
# and mq2 (not mq3), connected to the broker as the gateway user; returns once subscribed.
# DRV_ARGS (an array) adds mqtt_driver options.
start_driver() {
  local cfg=$M5_TMP/gw.yaml line
  {
    echo "mqtt:"
    echo "  host: 127.0.0.1"
    echo "  port: $MQ_PORT"
    echo "  password_file: $BROKER_DIR/gateway.password"
    echo "  reconnect_min_ms: 100"
    echo "  reconnect_max_ms: 500"
    for line in "$@"; do echo "  $line"; done
    grep -q "devices:" <<<"$*" || echo "  devices: [mq1, mq2]"
  } >"$cfg"
  rm -f "$M5_TMP/ctl"
  mkfifo "$M5_TMP/ctl"
  local before
  before=$(grep -c "subscribed to msgin5g" "$DRV_ERR" 2>/dev/null || echo 0)
  "$M5_BIN/mqtt_driver" --config "$cfg" --debug "${DRV_ARGS[@]}" <"$M5_TMP/ctl" >>"$DRV_OUT" \
    2>>"$DRV_ERR" &
  DRV_PID=$!
  track_pid "$DRV_PID"
  exec {DRV_FD}>"$M5_TMP/ctl"
  local i
  for ((i = 0; i < 100; i++)); do
    (($(grep -c "subscribed to msgin5g" "$DRV_ERR") > before)) && return 0
    kill -0 "$DRV_PID" 2>/dev/null || fail "mqtt_driver exited: $(tail -5 "$DRV_ERR")"
    sleep 0.1
  done
  fail "mqtt_driver did not subscribe: $(tail -5 "$DRV_ERR")"
}

# drv COMMAND...: one command to the driver.
drv() { echo "$*" >&"$DRV_FD"; }

# stop_driver: "quit", its exit status 0 (ASan reports leaks as a failure).
stop_driver() {
  drv quit
  exec {DRV_FD}>&-
  wait_pid_rc "$DRV_PID" 10
  ((WAIT_RC == 0)) || fail "mqtt_driver exited $WAIT_RC: $(tail -20 "$DRV_ERR")"
}

# wait_for FILE REGEX [SECONDS] [what]: fails unless FILE gets a matching line in time.
wait_for() {
  wait_file_line "$1" "$2" "${3:-10}" || fail "${4:-no line /$2/ in $1}: $(tail -15 "$1" | cut -c1-300)"
}

# count_lines FILE REGEX
count_lines() { grep -Ec -- "$2" "$1" 2>/dev/null || true; }

# hex TEXT: the bytes of TEXT in lower-case hex (the driver's payload= form).
hex() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; }

# ---- the real m5gw of kind mqtt (end-to-end tests, tests/gateway/e2e_mqtt_*.sh, with
# e2e_lib.bash) ----

# e2e_mqtt_gw_start DEVICES [extra mqtt.* members [core YAML lines...]]: m5gw gw1 of kind
# mqtt on the broker (as its gateway user; quick reconnection back-off), serving DEVICES (a
# YAML list body: "mq1, mq2"), known to m5s; returns once every device is registered.
e2e_mqtt_gw_start() {
  local devs=$1 extra=${2:-}
  shift 2 || shift $#
  e2e_gw_start mqtt "mqtt: {host: 127.0.0.1, port: $MQ_PORT, password_file: $BROKER_DIR/gateway.password, reconnect_min_ms: 100, reconnect_max_ms: 500, devices: [$devs]$extra}" "$@"
  e2e_mqtt_wait_registered
}

# e2e_mqtt_wait_registered: until the gateway logged a registration (of its devices, one
# batch) as done since the last call (E2E_REG_SEEN: the count seen so far).
E2E_REG_SEEN=0
e2e_mqtt_wait_registered() {
  local i n
  for ((i = 0; i < 300; i++)); do
    n=$(gw_log_count "registration of .*: done")
    if ((n > E2E_REG_SEEN)); then
      E2E_REG_SEEN=$n
      return 0
    fi
    kill -0 "$GW_PID" 2>/dev/null || fail "m5gw exited: $(tail -20 "$GW_LOG")"
    sleep 0.1
  done
  m5s_fail "the gateway's devices were not registered within 30 s: $(tail -10 "$GW_LOG")"
}

# dev_inbox FILE [JS_FILTER]: the messages a DEV_SUB_FMT="%t|%P|%x" subscriber printed, one
# JSON line each {topic, props: {name: value}, payload: <text of the bytes>, hex}.
dev_inbox() {
  node -e 'const f = new Function("m", "return (" + (process.argv[2] || "true") + ")");
           for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
             const p = l.split("|");
             if (p.length !== 3 || !p[0].startsWith("msgin5g/")) continue;
             const props = {};
             for (const kv of p[1].split(" ").filter(Boolean)) {
               const i = kv.indexOf(":");
               props[kv.slice(0, i)] = kv.slice(i + 1);
             }
             const m = { topic: p[0], props, hex: p[2], payload: Buffer.from(p[2], "hex").toString("latin1") };
             if (f(m)) console.log(JSON.stringify(m));
           }' "$1" "${2:-}"
}
