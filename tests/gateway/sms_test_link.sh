#!/usr/bin/env bash
# SMS gateway adapter against the npm smpp SMSC: the SMPP session: enquire_link both ways, the SMSC dropping the connection (RETRY, rebind), refusing the bind (back-off), going silent (enquire_link, bind and submit_sm unanswered -> reconnect), unbinding
# (tests/gateway/sms_it.mjs link; the adapter runs in tests/gateway/sms_driver.c).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" link
