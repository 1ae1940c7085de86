#!/usr/bin/env bash
# SMS gateway adapter against the npm smpp SMSC: device -> m5s: GSM 7-bit with the extension table, UCS-2, 8-bit data, routes and device-to-device, SME acknowledgement requested, deliver_sm_resp held until m5s accepted, refusals with their SMPP status, concatenated SMS by UDH and by SAR reassembled
# (tests/gateway/sms_it.mjs uplink; the adapter runs in tests/gateway/sms_driver.c).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" uplink
