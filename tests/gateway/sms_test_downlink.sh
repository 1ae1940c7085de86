#!/usr/bin/env bash
# SMS gateway adapter against the npm smpp SMSC: m5s -> device: submit_sm encoded by content (GSM 7-bit unpacked, UCS-2, 8-bit), source_addr by route, concatenated SMS within 140 octets a part, DELIVERED only at the last submit_sm_resp, unknown device / too long / SMSC refusals, SMSC delivery receipts -> reports, m5s's reports -> ESME Delivery Acknowledgement
# (tests/gateway/sms_it.mjs downlink; the adapter runs in tests/gateway/sms_driver.c).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" downlink
