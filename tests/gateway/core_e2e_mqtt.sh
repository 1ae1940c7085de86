#!/usr/bin/env bash
# m5gw of kind mqtt end to end: the real m5s, m5-aanf, m5c, m5ctl and Mosquitto
# (configured by tools/mqtt-broker-conf.sh; devices played by mosquitto_pub / mosquitto_sub).
# The gateway registers its device mq1; a UE's message to mq1 reaches the device's inbox
# through m5s's deliver-message, and what mq1 publishes to msgin5g/mq1/out/UE/ue1 reaches the UE
# through the gateway's spool and deliver-ue-message.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/core_lib.bash"
source "$M5_SRC/tests/gateway/mqtt_lib.bash"

gw_pki
start_broker "mq1"
start_aanf
start_m5s
setup_ue ue1 001010000000801 b1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
STANDIN_URL="https://localhost:$M5S_NORTH"
start_gw_kind mqtt \
  "mqtt: {host: 127.0.0.1, port: $MQ_PORT, password_file: $BROKER_DIR/gateway.password, devices: [mq1]}"
gw_add_at_m5s mqtt 'mq*'
wait_file_line "$GW_LOG" 'registration of mq1: done' 30 "$GW_PID" ||
  m5s_fail "mq1 not registered: $(tail -10 "$GW_LOG")"
# the adapter names its devices to the core, which then checks m5s holds nothing else for gw1
# (docs/gateways.md "Registration"): mq1 is kept, and still served below
wait_file_line "$GW_LOG" 'registrations: m5s held 1 UE Service ID\(s\) for gw1; 0 not configured' 30 "$GW_PID" ||
  m5s_fail "no convergence of m5s to the configured devices: $(grep registrations "$GW_LOG")"

# UE -> MQTT device
dev_sub_start mq1 "$M5_TMP/sub.out"
timeout 30 "$M5_BIN/m5c" --config ue1.yaml --server "$(m5c_uri tls)" send --to ue:mq1 \
  --payload 'hi mqtt' >send.out 2>&1 || m5s_fail "m5c send: $(cat send.out)"
wait_file_line "$M5_TMP/sub.out" '^msgin5g/mq1/in\|.*\|hi mqtt$' 30 ||
  m5s_fail "mq1 did not get the message: $(cat "$M5_TMP/sub.out"; tail -10 "$GW_LOG")"
dev_sub_stop

# MQTT device -> UE (stored by m5s until ue1 listens)
dev_pub mq1 -t msgin5g/mq1/out/UE/ue1 -m 'hello ue1' || fail "mosquitto_pub failed"
timeout 40 "$M5_BIN/m5c" --config ue1.yaml --server "$(m5c_uri tls)" listen --count 1 \
  --timeout 30 >listen.out 2>&1 || m5s_fail "ue1 got nothing: $(cat listen.out; tail -10 "$GW_LOG")"
grep -q '"oriAddr":{"addrType":"UE","addr":"mq1"},"destAddr":{"addrType":"UE","addr":"ue1"}' listen.out ||
  fail "not from mq1: $(cat listen.out)"
grep -q '"payloadText":"hello ue1"' listen.out || fail "payload: $(cat listen.out)"
wait_spool 0 10 || fail "the spool is not empty: $(cat "$M5_TMP/health.json")"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "PASS"
