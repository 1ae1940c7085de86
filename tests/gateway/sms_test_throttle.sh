#!/usr/bin/env bash
# SMS gateway adapter against the npm smpp SMSC: the submit window (sms.window outstanding at most), ESME_RTHROTTLED / ESME_RMSGQFUL retried after a pause, RETRY past sms.throttle_retries
# (tests/gateway/sms_it.mjs throttle; the adapter runs in tests/gateway/sms_driver.c).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" throttle
