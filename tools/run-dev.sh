#!/usr/bin/env bash
# `make run`: a working development system with no configuration (architecture §9).
# Usage: tools/run-dev.sh BUILD_DIR   (the binaries are in BUILD_DIR/bin)
#
# In order: the development PKI under var/pki on first run (with the MQTT gateway gw1's
# certificates, m5ctl pki issue --gw-id gw1: for its calls to m5s and for its MSGG listener);
# m5-aanf (waits for its /healthz); m5s (waits for its /healthz); the demo subscribers ue1 and
# ue2, provisioned through the real APIs (m5ctl subscriber add: K_AKMA to the AAnF, UE Service
# ID binding to m5s); the demo client configs var/demo/ue1.yaml (CoAP over TLS) and
# var/demo/ue2.yaml (CoAP over DTLS), mode 0600; Mosquitto on 127.0.0.1 (plain TCP, loopback
# only, passwords and the gateway ACL of tools/mqtt-broker-conf.sh; the demo device's
# credentials in var/demo/mq1.mqtt, mode 0600); the MQTT gateway gw1 on m5s (m5ctl gateway
# add, devices mq*) and m5gw of kind mqtt (waits for its /healthz, its subscription at the
# broker and m5s's registration of its device mq1); then ONE line starting READY with the
# m5c commands to try, and it waits.
# Ctrl-C or SIGTERM stops the daemons by pid in the reverse order: m5gw, Mosquitto, m5s,
# m5-aanf: each drains and must exit 0 within 5 s; run-dev.sh then exits 0. If a daemon dies,
# its log tail is printed, the others are stopped and run-dev.sh exits 1. Every run is
# idempotent: the PKI, the databases, the broker's passwords and the gateway's spool are kept,
# the demo subscribers, the gateway and its device are provisioned again (which replaces them).
#
# Files, all under $M5_RUN_DIR/var: pki/ (dev PKI), aanf/, m5s/ (databases; admin.token, the
# management port's bearer token, which m5s writes at its first start), mqtt/ (the broker's
# configuration, password file, ACL, persistence; gateway.password), gw/gw1/ (the gateway's
# spool), log/{m5-aanf,m5s,mosquitto,m5gw}.log, run/*.pid (while running), run/*.yaml (daemon
# configs), demo/ue{1,2}.yaml, demo/mq1.mqtt.
#
# Environment (all optional):
#   M5_RUN_DIR    where ./var lives; default: the repository root. The daemons run in this
#                 directory, so their default relative paths (var/...) land in it.
#   M5_AANF_PORT  m5-aanf Naanf_AKMA port (default 7443)
#   M5_AANF_MGMT  m5-aanf management port, /healthz (default 9091)
#   M5_UE_PORT    m5s MSGin5G-1 port, udp (DTLS) and tcp (TLS) (default 5684)
#   M5_MGMT_PORT  m5s management port, /healthz and admin API (default 9090)
#   M5_NORTH_PORT m5s northbound port, MSGin5G-3 for Application Servers (default 8443)
#   M5_MQTT_PORT  Mosquitto's MQTT port, plain TCP on 127.0.0.1 (default 1883)
#   M5_GW_PORT    m5gw's MSGG listener, where m5s delivers to MQTT devices (default 9444: not
#                 m5gw's own default 9443, the target the README gives the AS as1)
#   M5_GW_MGMT    m5gw's management port, /healthz (default 9095)
# m5s gets a config file var/run/m5s.yaml because it listens on 127.0.0.1 here (its default is
# every interface, and the demo keys below are public); m5-aanf gets var/run/m5-aanf.yaml only
# when a port is overridden. Everything else is the daemons' defaults.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/run-lib.sh
source "$REPO/tools/run-lib.sh"
run_reexec_sigint "$0" "$@"
RUN_NAME=run-dev
# shellcheck disable=SC2016 # backquotes as text
RUN_WHAT='`make run` (tools/run-dev.sh)'
PID_DIR=var/run

BUILD=${1:?usage: tools/run-dev.sh BUILD_DIR}
CALLER_DIR=$PWD
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || {
  echo "run-dev: $BUILD/bin does not exist; build first (make build)" >&2
  exit 1
}
run_check_bin m5-aanf m5s m5ctl m5c m5gw
# Mosquitto (Debian puts the broker in /usr/sbin, which a user's PATH may not have).
MOSQUITTO=$(command -v mosquitto || true)
[[ -n $MOSQUITTO || ! -x /usr/sbin/mosquitto ]] || MOSQUITTO=/usr/sbin/mosquitto
if [[ -z $MOSQUITTO ]] || ! command -v mosquitto_passwd >/dev/null; then
  echo "run-dev: Mosquitto is missing; install it: apt-get install mosquitto mosquitto-clients" >&2
  exit 1
fi
RUN_DIR=${M5_RUN_DIR:-$REPO}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
cd "$RUN_DIR"

AANF_PORT=$(port_var M5_AANF_PORT 7443)
AANF_MGMT=$(port_var M5_AANF_MGMT 9091)
UE_PORT=$(port_var M5_UE_PORT 5684)
MGMT_PORT=$(port_var M5_MGMT_PORT 9090)
NORTH_PORT=$(port_var M5_NORTH_PORT 8443)
MQTT_PORT=$(port_var M5_MQTT_PORT 1883)
GW_PORT=$(port_var M5_GW_PORT 9444)
GW_MGMT=$(port_var M5_GW_MGMT 9095)
AANF_URL=https://localhost:$AANF_PORT
M5S_ADMIN=http://127.0.0.1:$MGMT_PORT

umask 077
mkdir -p var/log var/run var/demo
AANF_LOG=var/log/m5-aanf.log
M5S_LOG=var/log/m5s.log
MQ_LOG=var/log/mosquitto.log
GW_LOG=var/log/m5gw.log
EXE_OF[mosquitto]=$MOSQUITTO
run_check_not_running m5gw mosquitto m5s m5-aanf
trap on_signal INT TERM HUP

# Another process on one of our TCP ports would answer our health checks (or, on the MQTT
# port, take the gateway's and the devices' connections): refuse to start, naming the port.
PORT_OF=([M5_AANF_PORT]=$AANF_PORT [M5_AANF_MGMT]=$AANF_MGMT [M5_UE_PORT]=$UE_PORT
  [M5_MGMT_PORT]=$MGMT_PORT [M5_NORTH_PORT]=$NORTH_PORT [M5_MQTT_PORT]=$MQTT_PORT
  [M5_GW_PORT]=$GW_PORT [M5_GW_MGMT]=$GW_MGMT)
PORT_TAKEN_HINT[M5_MQTT_PORT]="the MQTT port 127.0.0.1:$MQTT_PORT/tcp is already in use (another make run, or the system's Mosquitto service: systemctl stop mosquitto); stop it, or choose another port with M5_MQTT_PORT (e.g. M5_MQTT_PORT=1884 make run)"
run_check_ports

# 1. The development PKI (run_pki).
run_pki
# The MQTT gateway gw1's certificates: gw-gw1 (SAN URI urn:msgin5g:gw:gw1, clientAuth) towards
# m5s and msgg-gw1 (the same URI, localhost and 127.0.0.1, serverAuth) for its MSGG listener,
# which m5s dials at 127.0.0.1 and accepts only as gw1 (docs/gateways.md set-up step 1). Kept
# once made; a var/pki from before msgg-gw1 existed gets both anew (one set, one key pair each).
if [[ ! -s var/pki/gw-gw1.crt || ! -s var/pki/gw-gw1.key || ! -s var/pki/msgg-gw1.crt ||
  ! -s var/pki/msgg-gw1.key ]]; then
  "$BIN/m5ctl" pki issue --gw-id gw1 --dir var/pki --force >/dev/null
  echo "pki: wrote var/pki/gw-gw1.crt and var/pki/msgg-gw1.crt (the MQTT gateway gw1)"
fi

# 2. m5-aanf.
aanf_args=()
if [[ -n ${M5_AANF_PORT:-} || -n ${M5_AANF_MGMT:-} ]]; then
  printf 'listen: {host: 127.0.0.1, port: %s}\nmgmt: {host: 127.0.0.1, port: %s}\n' \
    "$AANF_PORT" "$AANF_MGMT" >var/run/m5-aanf.yaml
  aanf_args=(--config var/run/m5-aanf.yaml)
fi
start m5-aanf "$AANF_LOG" "${aanf_args[@]}"
AANF_PID=$STARTED_PID
wait_healthy m5-aanf "$AANF_PID" "$AANF_MGMT" "$AANF_LOG"

# 3. m5s.
printf 'ue: {host: 127.0.0.1, port: %s}\nmgmt: {host: 127.0.0.1, port: %s}\naanf: {url: %s}\nnorth: {host: 127.0.0.1, port: %s}\n' \
  "$UE_PORT" "$MGMT_PORT" "$AANF_URL" "$NORTH_PORT" >var/run/m5s.yaml
start m5s "$M5S_LOG" --config var/run/m5s.yaml
M5S_PID=$STARTED_PID
wait_healthy m5s "$M5S_PID" "$MGMT_PORT" "$M5S_LOG"

# 4. The demo subscribers (again on every run) and their client configs var/demo/UE.yaml.
for ue in "${DEMO_UES[@]}"; do
  provision_demo_ue "$ue" "$AANF_URL" "$M5S_ADMIN" "${DEMO_SCHEME[$ue]}://localhost:$UE_PORT" \
    "var/demo/$ue.yaml" "$M5S_LOG"
done

# 5. Mosquitto on 127.0.0.1:$MQTT_PORT: passwords (the gateway's in var/mqtt/gateway.password,
# the demo device mq1's in var/demo/mq1.mqtt, both kept across runs), the ACL that keeps each
# device to its own topics, persistence in var/mqtt/data/ (docs/gateways-mqtt.md).
if ! out=$("$REPO/tools/mqtt-broker-conf.sh" --dir var/mqtt --cred-dir var/demo \
  --port "$MQTT_PORT" --devices mq1 2>&1); then
  echo "run-dev: tools/mqtt-broker-conf.sh failed: $out" >&2
  failed "configuring Mosquitto failed" "$M5S_LOG"
fi
start mosquitto "$MQ_LOG" -c var/mqtt/mosquitto.conf
MQ_PID=$STARTED_PID
for ((i = 0; ; i++)); do
  kill -0 "$MQ_PID" 2>/dev/null || failed "mosquitto exited during start-up" "$MQ_LOG"
  (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break
  ((i < 100)) || failed "mosquitto not listening on 127.0.0.1:$MQTT_PORT after 10 s" "$MQ_LOG"
  sleep 0.1
done

# 6. The MQTT gateway gw1: first m5s's side (where it delivers, which UE Service IDs it may
# register and originate as), then m5gw itself, which registers mq1 with m5s once it has a
# token. READY waits for that registration and for its subscription at the broker, so that
# what mq1 publishes from then on reaches m5s.
if ! out=$("$BIN/m5ctl" gateway add --gw-id gw1 --kind mqtt --target "127.0.0.1:$GW_PORT" \
  --ue-svc-ids 'mq*' --m5s-admin "$M5S_ADMIN" --admin-token var/m5s/admin.token 2>&1); then
  echo "run-dev: m5ctl gateway add failed: $out" >&2
  failed "adding the gateway gw1 to m5s failed" "$M5S_LOG"
fi
cat >var/run/m5gw.yaml <<EOF
# m5gw of kind mqtt for make run (tools/run-dev.sh), written on every run.
gw_id: gw1
kind: mqtt
m5s: {url: "https://localhost:$NORTH_PORT"}
tls: {cert: var/pki/gw-gw1.crt, key: var/pki/gw-gw1.key, ca: var/pki/ca.crt}
msgg: {host: 127.0.0.1, port: $GW_PORT, cert: var/pki/msgg-gw1.crt, key: var/pki/msgg-gw1.key}
mgmt: {host: 127.0.0.1, port: $GW_MGMT}
spool: {path: var/gw/gw1/spool.db}
mqtt: {host: 127.0.0.1, port: $MQTT_PORT, password_file: var/mqtt/gateway.password, devices: [mq1]}
EOF
start m5gw "$GW_LOG" --config var/run/m5gw.yaml
GW_PID=$STARTED_PID
wait_healthy m5gw "$GW_PID" "$GW_MGMT" "$GW_LOG"
for ((i = 0; ; i++)); do
  kill -0 "$GW_PID" 2>/dev/null || failed "m5gw exited during start-up" "$GW_LOG"
  if since_start "$GW_LOG" 'subscribed to msgin5g/' &&
    since_start "$GW_LOG" 'registration of mq1: done'; then
    break
  fi
  ((i < 300)) || failed "m5gw did not register mq1 and subscribe at the broker within 30 s" "$GW_LOG"
  sleep 0.1
done

M5C=$(disp "$BIN/m5c")
UE1=$(disp "$RUN_DIR/var/demo/ue1.yaml")
UE2=$(disp "$RUN_DIR/var/demo/ue2.yaml")
MQ1=$(disp "$RUN_DIR/var/demo/mq1.mqtt")
echo "READY demo configs $UE1 (ue1, TLS) $UE2 (ue2, DTLS); MQTT device mq1: $MQ1 (broker" \
  "127.0.0.1:$MQTT_PORT); receive: $M5C --config $UE2 listen; send: $M5C --config $UE1 send" \
  "--to ue:ue2 --payload hi; logs: $(disp "$RUN_DIR/var/log")/; Ctrl-C stops"

# 7. Wait (run_wait_all): Ctrl-C stops the daemons in the reverse order of their start; a
# daemon that exits is a failure.
run_wait_all
