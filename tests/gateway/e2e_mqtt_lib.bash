# shellcheck shell=bash
# What every MQTT end-to-end test (tests/gateway/e2e_mqtt_*.sh) sources after tests/lib.sh: the
# gateway core's helpers (core_lib.bash), the end-to-end ones (e2e_lib.bash) and the MQTT
# kind's (mqtt_lib.bash), and how each test begins.
source "$M5_SRC/tests/gateway/core_lib.bash"
source "$M5_SRC/tests/gateway/e2e_lib.bash"
source "$M5_SRC/tests/gateway/mqtt_lib.bash"

# e2e_mqtt_begin "USERS" SUPI KAUSF: the PKI, m5-aanf and m5s; Mosquitto with the device users
# USERS (space-separated); the UE ue1 provisioned with SUPI and K_AUSF.
e2e_mqtt_begin() {
  e2e_start_m5s
  start_broker "$1"
  setup_ue ue1 "$2" "$3"
}
