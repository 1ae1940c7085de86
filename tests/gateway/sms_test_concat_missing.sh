#!/usr/bin/env bash
# SMS gateway adapter against the npm smpp SMSC: a concatenated SMS missing a part: its parts refused (ESME_RX_P_APPN) after sms.reassembly_timeout_ms with a log line naming the device, reference and missing parts; a broken UDH refused
# (tests/gateway/sms_it.mjs concat_missing; the adapter runs in tests/gateway/sms_driver.c).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" concat_missing
