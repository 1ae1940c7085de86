#!/usr/bin/env bash
# mqtt-broker-conf.sh: writes Mosquitto's configuration for the MSGin5G MQTT gateway
# (docs/gateways-mqtt.md "The broker"): a listener (loopback by default), no anonymous
# clients, a password file (hashed by mosquitto_passwd, Debian package mosquitto), and the ACL
# that lets a device publish only under msgin5g/<its id>/out/# and read only msgin5g/<its id>/in,
# the gateway user both sides of every device. Persistence on, so that queued QoS 1 messages
# and persistent sessions survive a graceful restart.
#
#   tools/mqtt-broker-conf.sh --dir DIR [--port 1883] [--host 127.0.0.1]
#       [--gateway-user gateway] [--devices "mq1 mq2"] [--devices-file FILE]
#       [--tls-cert FILE --tls-key FILE] [--user NAME] [--autosave SECONDS] [--cred-dir DIR2]
#       [--max-queued N]
#
# Writes, in DIR: mosquitto.conf (start: mosquitto -c DIR/mosquitto.conf), passwd, acl,
# gateway.password (the gateway's mqtt.password_file), <deviceId>.mqtt for each device (lines
# username=<id> and password=<secret>, what the device configures), data/ (the broker's
# persistence). --cred-dir puts the <deviceId>.mqtt files in DIR2 instead (make run's
# var/demo/). Everything secret is mode 0600. Run again with more devices: existing
# passwords are kept, new ones generated. Passwords never appear on a command line.
# --host other than a loopback address needs --tls-cert/--tls-key (no passwords in clear).
# --user: the account Mosquitto drops to when started as root (default: whoever runs this;
# "mosquitto" for the Debian service, which must then be able to read DIR).
set -euo pipefail

DIR= CRED_DIR= PORT=1883 HOST=127.0.0.1 GW_USER=gateway DEVICES=() TLS_CERT= TLS_KEY= RUN_USER= AUTOSAVE=60 MAX_QUEUED=1000
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case $1 in
  --dir) DIR=$2; shift 2 ;;
  --cred-dir) CRED_DIR=$2; shift 2 ;;
  --port) PORT=$2; shift 2 ;;
  --host) HOST=$2; shift 2 ;;
  --gateway-user) GW_USER=$2; shift 2 ;;
  --devices) read -r -a more <<<"$2"; DEVICES+=("${more[@]}"); shift 2 ;;
  --devices-file) mapfile -t more < <(grep -v '^[[:space:]]*\(#\|$\)' "$2"); DEVICES+=("${more[@]}"); shift 2 ;;
  --tls-cert) TLS_CERT=$2; shift 2 ;;
  --tls-key) TLS_KEY=$2; shift 2 ;;
  --user) RUN_USER=$2; shift 2 ;;
  --autosave) AUTOSAVE=$2; shift 2 ;;
  --max-queued) MAX_QUEUED=$2; shift 2 ;;
  -h | --help) usage ;;
  *) echo "mqtt-broker-conf: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
die() { echo "mqtt-broker-conf: $*" >&2; exit 1; }
[[ -n $DIR ]] || die "--dir is required (--help)"
[[ $PORT =~ ^[0-9]+$ ]] && ((PORT >= 1 && PORT <= 65535)) || die "--port: expected 1..65535"
[[ $AUTOSAVE =~ ^[0-9]+$ ]] || die "--autosave: expected whole seconds"
[[ $MAX_QUEUED =~ ^[1-9][0-9]*$ ]] || die "--max-queued: expected a positive integer"
if [[ -n $TLS_CERT || -n $TLS_KEY ]]; then
  [[ -r $TLS_CERT && -r $TLS_KEY ]] || die "--tls-cert and --tls-key: both, readable"
fi
case $HOST in
127.* | ::1) ;;
*) [[ -n $TLS_CERT ]] || die "--host $HOST is not loopback: give --tls-cert and --tls-key" ;;
esac
command -v mosquitto_passwd >/dev/null || die "mosquitto_passwd missing (apt-get install mosquitto)"
# A device ID is its UE Service ID (1-128 printable, no spaces) and a topic level: no / + #.
# The ACL's %u is the user name, so the user name must be the device ID itself.
for id in "${DEVICES[@]}" "$GW_USER"; do
  [[ ${#id} -ge 1 && ${#id} -le 128 && $id =~ ^[!-~]+$ && $id != *[/+#:]* ]] ||
    die "'$id' cannot be a device or user name (1-128 printable, no spaces, / + # :)"
done
for id in "${DEVICES[@]}"; do
  [[ $id != "$GW_USER" ]] || die "device '$id' has the gateway's user name"
done

umask 077
mkdir -p "$DIR/data" "${CRED_DIR:-$DIR}"
DIR=$(cd "$DIR" && pwd)
CRED_DIR=$(cd "${CRED_DIR:-$DIR}" && pwd)
secret() { openssl rand -hex 24; }
# password_of FILE: the password= line of a credentials file, if any.
password_of() { [[ -f $1 ]] && sed -n 's/^password=//p' "$1" || true; }

[[ -s $DIR/gateway.password ]] || secret >"$DIR/gateway.password"
chmod 600 "$DIR/gateway.password"
plain=$(mktemp "$DIR/.passwd.XXXXXX")
trap 'rm -f "$plain"' EXIT
printf '%s:%s\n' "$GW_USER" "$(head -n 1 "$DIR/gateway.password")" >"$plain"
# every device ever configured here keeps its password (a re-run adds, never rotates)
declare -A seen=()
for f in "$CRED_DIR"/*.mqtt; do
  [[ -e $f ]] || continue
  id=$(basename "$f" .mqtt)
  [[ ${#id} -le 128 && $id =~ ^[!-~]+$ && $id != *[/+#:]* ]] || die "$f: not a device ID"
  DEVICES+=("$id")
done
for id in "${DEVICES[@]}"; do
  [[ -z ${seen[$id]:-} ]] || continue
  seen[$id]=1
  pw=$(password_of "$CRED_DIR/$id.mqtt")
  [[ -n $pw ]] || pw=$(secret)
  printf 'username=%s\npassword=%s\n' "$id" "$pw" >"$CRED_DIR/$id.mqtt"
  chmod 600 "$CRED_DIR/$id.mqtt"
  printf '%s:%s\n' "$id" "$pw" >>"$plain"
done
mosquitto_passwd -U "$plain" >/dev/null # hashes every line in place (PBKDF2-SHA512)
mv "$plain" "$DIR/passwd"
trap - EXIT

cat >"$DIR/acl" <<EOF
# MSGin5G MQTT gateway ACL (tools/mqtt-broker-conf.sh; docs/gateways-mqtt.md).
# Every client: the user name is the device ID. A device publishes only under its own outbox
# and reads only its own inbox.
pattern write msgin5g/%u/out/#
pattern read msgin5g/%u/in

# The gateway: reads every device's outbox, writes every device's inbox.
user $GW_USER
topic read msgin5g/+/out/#
topic write msgin5g/+/in
EOF

{
  echo "# Mosquitto for the MSGin5G MQTT gateway (tools/mqtt-broker-conf.sh; docs/gateways-mqtt.md)"
  echo "per_listener_settings false"
  echo "allow_anonymous false"
  echo "password_file $DIR/passwd"
  echo "acl_file $DIR/acl"
  echo "# QoS 1 messages queued for offline persistent sessions survive a graceful restart"
  echo "persistence true"
  echo "persistence_location $DIR/data/"
  echo "autosave_interval $AUTOSAVE"
  echo "# QoS 1 messages kept per offline device session; beyond it Mosquitto drops"
  echo "max_queued_messages $MAX_QUEUED"
  echo "log_dest stderr"
  echo "log_type error"
  echo "log_type warning"
  echo "log_type notice"
  echo "user ${RUN_USER:-$(id -un)}"
  echo "listener $PORT $HOST"
  if [[ -n $TLS_CERT ]]; then
    echo "certfile $TLS_CERT"
    echo "keyfile $TLS_KEY"
    echo "tls_version tlsv1.2"
  fi
} >"$DIR/mosquitto.conf"
echo "mqtt-broker-conf: wrote $DIR/mosquitto.conf (listener $HOST:$PORT$([[ -n $TLS_CERT ]] && echo ', TLS'), ${#seen[@]} devices)" >&2
