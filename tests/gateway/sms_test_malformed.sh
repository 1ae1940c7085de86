#!/usr/bin/env bash
# SMS gateway adapter against the npm smpp SMSC: malformed PDUs from the SMSC: generic_nack with their sequence number, nothing reaches m5s, no crash or leak under ASan, the link stays up; a bad command_length drops it
# (tests/gateway/sms_it.mjs malformed; the adapter runs in tests/gateway/sms_driver.c).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" malformed
