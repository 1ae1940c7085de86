#!/usr/bin/env bash
# SMS gateway adapter: a bad sms.* configuration (devices, routes, bind identity, bounds) stops
# it at start with the key and the entry named (tests/gateway/sms_it.mjs config).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" config
