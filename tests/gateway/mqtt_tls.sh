#!/usr/bin/env bash
# The MQTT gateway over TLS to the broker (production; docs/gateways-mqtt.md "Security"):
# Mosquitto presents a certificate for localhost from the test CA (tools/mqtt-broker-conf.sh
# --tls-cert/--tls-key); the adapter checks it against mqtt.ca and mqtt.tls_name, carries
# messages both ways over it, and refuses a broker whose certificate names another host. A
# non-loopback broker without TLS is refused at start (the password would travel in clear), a
# password file others can read is refused at start, a wrong password is refused by the broker.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/mqtt_lib.bash"

make_pki
make_cert broker "DNS:localhost" serverAuth
BROKER_ARGS=(--tls-cert "$M5_TMP/pki/broker.crt" --tls-key "$M5_TMP/pki/broker.key")
start_broker
TLS_DEV=(--cafile "$M5_TMP/pki/ca.crt" --insecure) # mosquitto_pub: 127.0.0.1 is not "localhost"

start_driver "tls: true" "ca: $M5_TMP/pki/ca.crt" "tls_name: localhost"
dev_pub mq1 "${TLS_DEV[@]}" -t msgin5g/mq1/out/UE/ue2 -m 'over tls' || fail "TLS publish failed"
wait_for "$DRV_OUT" "^uplink ori=UE:mq1 dest=UE:ue2 .* payload=$(hex 'over tls')$"
dev_sub_start mq1 "$M5_TMP/mq1.in" "${TLS_DEV[@]}"
drv deliver mq1 dl-1 UE:ue1 back over tls
wait_for "$DRV_OUT" "^dl dl-1 DELIVERED"
wait_for "$M5_TMP/mq1.in" "\|back over tls$"
kill -TERM "$SUB_PID" 2>/dev/null || true
stop_driver

# a broker certificate for another name: no session, the reason logged, no plaintext fallback
: >"$DRV_ERR"
cfg=$M5_TMP/gw-wrong.yaml
printf 'mqtt:\n  host: 127.0.0.1\n  port: %s\n  password_file: %s\n  tls: true\n  ca: %s\n  tls_name: broker.example\n  devices: [mq1]\n  reconnect_min_ms: 100\n  reconnect_max_ms: 200\n' \
  "$MQ_PORT" "$BROKER_DIR/gateway.password" "$M5_TMP/pki/ca.crt" >"$cfg"
"$M5_BIN/mqtt_driver" --config "$cfg" </dev/null >/dev/null 2>>"$DRV_ERR" &
BAD=$!
track_pid "$BAD"
wait_for "$DRV_ERR" "TLS handshake failed: .*(hostname mismatch|certificate verify failed)" 10
! grep -q "subscribed to msgin5g" "$DRV_ERR" || fail "subscribed through a broker with the wrong name"
kill -TERM "$BAD"
wait_pid_rc "$BAD" 10

# plain TCP to a broker that is not on loopback: refused at start
printf 'mqtt:\n  host: 192.0.2.1\n  devices: [mq1]\n' >"$M5_TMP/gw-plain.yaml"
if "$M5_BIN/mqtt_driver" --config "$M5_TMP/gw-plain.yaml" </dev/null >"$M5_TMP/plain.out" 2>&1; then
  fail "plain TCP to a non-loopback broker was accepted"
fi
grep -q "mqtt.host 192.0.2.1 is not a loopback address: set mqtt.tls" "$M5_TMP/plain.out" ||
  fail "no precise error: $(cat "$M5_TMP/plain.out")"
# a password file readable by others: refused at start, naming the file
cp "$BROKER_DIR/gateway.password" "$M5_TMP/open.password"
chmod 644 "$M5_TMP/open.password"
printf 'mqtt:\n  port: %s\n  password_file: %s\n  devices: [mq1]\n' "$MQ_PORT" "$M5_TMP/open.password" >"$M5_TMP/gw-open.yaml"
if "$M5_BIN/mqtt_driver" --config "$M5_TMP/gw-open.yaml" </dev/null >"$M5_TMP/open.out" 2>&1; then
  fail "a password file readable by others was accepted"
fi
grep -q "mqtt.password_file $M5_TMP/open.password: must not be readable by group or others" \
  "$M5_TMP/open.out" || fail "no precise error: $(cat "$M5_TMP/open.out")"

# a wrong password: the broker refuses the session, the gateway says so and keeps trying
echo wrong-password >"$M5_TMP/wrong.password"
chmod 600 "$M5_TMP/wrong.password"
printf 'mqtt:\n  port: %s\n  password_file: %s\n  tls: true\n  ca: %s\n  tls_name: localhost\n  devices: [mq1]\n  reconnect_min_ms: 100\n  reconnect_max_ms: 200\n' \
  "$MQ_PORT" "$M5_TMP/wrong.password" "$M5_TMP/pki/ca.crt" >"$M5_TMP/gw-wrongpw.yaml"
"$M5_BIN/mqtt_driver" --config "$M5_TMP/gw-wrongpw.yaml" </dev/null >/dev/null 2>"$M5_TMP/wrongpw.err" &
BAD=$!
track_pid "$BAD"
wait_for "$M5_TMP/wrongpw.err" "CONNACK refused the connection \\(reason 0x(86|87|05|04): bad user name or password" 10
wait_for "$M5_TMP/wrongpw.err" "next attempt in" 10
! grep -q "wrong-password" "$M5_TMP/wrongpw.err" || fail "the password reached the log"
kill -TERM "$BAD"
wait_pid_rc "$BAD" 10
((WAIT_RC == 0)) || fail "mqtt_driver exited $WAIT_RC after SIGTERM: $(tail -5 "$M5_TMP/wrongpw.err")"
echo "PASS"
