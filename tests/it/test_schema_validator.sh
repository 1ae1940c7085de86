#!/usr/bin/env bash
# The schema check the HTTP tests rely on must itself tell valid from invalid bodies,
# or a drift from TS 29.535 / 29.522 / 29.571 would pass unnoticed.
set -euo pipefail
S="$M5_SRC/spec/openapi"
V="node $M5_SRC/tests/schema/validate.mjs"
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP" && cd "$M5_TMP"

echo '{"kaf":"9767f04bef5e812e0283e129e131730a493d3852c6b0208a66b20885aea794e7","expiry":"2026-11-29T03:00:00Z","supi":"imsi-001010123456789"}' > good.json
echo '{"expiry":"2026-11-29T03:00:00Z"}' > no_kaf.json
echo '{"kaf":"00","expiry":"tomorrow"}' > bad_time.json
echo '{"kaf":"00","expiry":"2026-11-29T03:00:00Z","supi":12345}' > bad_supi.json
echo '{"status":400,"cause":"MANDATORY_IE_MISSING","invalidParams":[{"param":"/aKId","reason":"missing"}]}' > pd.json
echo '{"status":"400","invalidParams":[{"reason":"missing"}]}' > pd_bad.json

$V "$S/TS29522_AKMA.yaml" AkmaAfKeyData good.json
for f in no_kaf.json bad_time.json bad_supi.json; do
  if $V "$S/TS29522_AKMA.yaml" AkmaAfKeyData $f 2>/dev/null; then echo "FAIL: $f accepted"; exit 1; fi
done
$V "$S/TS29571_CommonData.yaml" ProblemDetails pd.json
if $V "$S/TS29571_CommonData.yaml" ProblemDetails pd_bad.json 2>/dev/null; then echo "FAIL: pd_bad accepted"; exit 1; fi
echo "schema validator: ok"
