#!/usr/bin/env bash
# The schema check the HTTP tests rely on must itself tell valid from invalid bodies,
# or a drift from TS 29.535 / 29.522 / 29.571 / 29.538 would pass unnoticed. Its strict mode
# (validate.mjs --strict, lib.sh validate_sent: the check of every body m5s and m5-aanf send)
# must refuse a member the schema does not declare, at any depth, while accepting what allOf /
# oneOf branches and $refs declare together; the open mode (bodies third parties send) must not.
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
# ---- strict mode: only declared members -----------------------------------------------------
VS="$V --strict"
M="$S/TS29538_MSGS_MSGDelivery.yaml"
ADDR='"oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"AS","addr":"as1"}'
echo "{$ADDR,\"msgId\":\"m\",\"appId\":\"a\",\"delivStReqInd\":true,\"payload\":\"aGk=\",\"stoAndFwInd\":true,\"stoAndFwParams\":{\"exprTime\":\"2026-11-29T03:00:00Z\"}}" >uemd.json
echo "{$ADDR,\"msgId\":\"m\",\"payload\":\"aGk=\",\"priority\":\"HIGH\",\"stoAndFwInd\":false}" >uemd_prio.json
echo "{$ADDR,\"msgId\":\"m\",\"stoAndFwInd\":true,\"stoAndFwParams\":{\"exprTime\":\"2026-11-29T03:00:00Z\",\"x\":1}}" >uemd_deep.json
echo '{"oriAddr":{"addrType":"UE","addr":"ue1","port":1},"msgId":"m"}' >ack_addr.json
echo '{"status":400,"cause":"X","invalidParams":[{"param":"/a","reason":"r","hint":"h"}]}' >pd_item.json
$VS "$M" UEMessageDelivery uemd.json
$V "$M" UEMessageDelivery uemd_prio.json # open: an undeclared member passes, as OpenAPI allows
if $VS "$M" UEMessageDelivery uemd_prio.json 2>err.txt; then echo "FAIL: strict accepted priority in a UEMessageDelivery"; exit 1; fi
grep -q 'unevaluatedProperty":"priority"' err.txt || { echo "FAIL: strict did not name priority: $(cat err.txt)"; exit 1; }
if $VS "$M" UEMessageDelivery uemd_deep.json 2>/dev/null; then echo "FAIL: strict accepted stoAndFwParams.x"; exit 1; fi
if $VS "$M" MessageDeliveryAck ack_addr.json 2>/dev/null; then echo "FAIL: strict accepted oriAddr.port (a cross-file \$ref)"; exit 1; fi
if $VS "$S/TS29571_CommonData.yaml" ProblemDetails pd_item.json 2>/dev/null; then echo "FAIL: strict accepted invalidParams[0].hint"; exit 1; fi
$VS "$S/TS29571_CommonData.yaml" ProblemDetails pd.json
$VS "$S/TS29522_AKMA.yaml" AkmaAfKeyData good.json

# combinations, on a schema file of our own: allOf members are declared together; a oneOf
# branch's members count when that branch matched; maps, free-form objects and schemas of files
# we do not hold stay open
mkdir -p own
cat >own/Own.yaml <<'EOF'
openapi: 3.0.0
info: {title: strict-mode self-test, version: '1'}
paths: {}
components:
  schemas:
    A:
      type: object
      required: [a]
      properties:
        a: {type: string}
    B:
      type: object
      properties:
        b: {type: integer}
        sub: {$ref: '#/components/schemas/A'}
    AB:
      allOf:
        - $ref: '#/components/schemas/A'
        - $ref: '#/components/schemas/B'
    AorC:
      oneOf:
        - $ref: '#/components/schemas/A'
        - type: object
          required: [c]
          properties:
            c: {type: boolean}
    Open:
      type: object
      properties:
        free: {type: object}
        map:
          type: object
          additionalProperties: {$ref: '#/components/schemas/A'}
        elsewhere: {$ref: 'NotHeld.yaml#/components/schemas/X'}
EOF
own_ok() { echo "$2" >own.json; $VS own/Own.yaml "$1" own.json || { echo "FAIL: strict refused $1 $2"; exit 1; }; }
own_bad() { echo "$2" >own.json; if $VS own/Own.yaml "$1" own.json 2>/dev/null; then echo "FAIL: strict accepted $1 $2"; exit 1; fi; }
own_ok AB '{"a":"x","b":1,"sub":{"a":"y"}}'
own_bad AB '{"a":"x","b":1,"z":1}'
own_bad AB '{"a":"x","sub":{"a":"y","z":1}}'
own_ok AorC '{"a":"x"}'
own_ok AorC '{"c":true}'
own_bad AorC '{"c":true,"z":1}'
own_ok Open '{"free":{"any":1},"map":{"k1":{"a":"x"}},"elsewhere":{"w":1}}'
own_bad Open '{"map":{"k1":{"a":"x","z":1}}}'
own_bad Open '{"z":1}'
echo "schema validator: ok (open and strict)"
