#!/usr/bin/env bash
# SMS gateway adapter: its devices registered with m5s through the core at start, in calls of
# at most 1,000 UE Service IDs, a failed round repeated after a pause (m5s unreachable)
# (tests/gateway/sms_it.mjs register; the adapter runs in tests/gateway/sms_driver.c).
set -euo pipefail
"$M5_SRC/tests/schema/ensure-node-deps.sh"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP"
exec node "$M5_SRC/tests/gateway/sms_it.mjs" register
