#!/usr/bin/env bash
# SMS gateway adapter: what the SMSC can make it hold is bounded (sms.max_pending_mo device
# messages waiting for m5s or in reassembly, sms.queue_max parts waiting for the window):
# past them ESME_RX_T_APPN / RETRY, and nothing else changes
# (tests/gateway/sms_it.mjs bounds; the adapter runs in tests/gateway/sms_driver.c).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" bounds
