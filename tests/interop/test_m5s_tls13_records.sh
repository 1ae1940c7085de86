#!/usr/bin/env bash
# Interop: the TLS 1.3 record layer m5s runs itself once a UE's TLS_AES_128_GCM_SHA256
# handshake is done (src/server/ue/ue_rec13.c), against OpenSSL's client (tls13_rec.c):
#  - keyupdate: KeyUpdates with and without update_requested keep the session working in both
#    directions, each request gets the server's own KeyUpdate, and close_notify is answered
#    with close_notify (RFC 8446 §4.6.3, §6.1);
#  - tamper: a record with one bit flipped gets a bad_record_mac alert and the connection is
#    closed (RFC 8446 §5.2);
#  - plain / overflow: a plaintext handshake record after the handshake gets
#    unexpected_message, a record longer than 2^14 + 256 record_overflow, each closing;
# the server stays healthy and a new session works after each.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI1=001010000000501
KAUSF1=505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f

TOOL="$M5_TMP/tls13_rec"
cc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -o "$TOOL" "$M5_SRC/tests/interop/tls13_rec.c" \
  $(pkg-config --cflags --libs openssl) 2>build.log || fail "building tls13_rec: $(cat build.log)"

make_pki
start_aanf
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
AKID=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
[[ -n $AKID && -n $KAF ]] || fail "m5ctl akma derive gave no A-KID or K_AF"

for mode in keyupdate tamper plain overflow keyupdate; do
  rc=0
  timeout 60 "$TOOL" "$M5S_PORT" "$KAF" "$AKID" ue1 "$mode" >"$mode.out" 2>"$mode.err" || rc=$?
  [[ $rc == 0 && $(cat "$mode.out") == OK ]] ||
    m5s_fail "tls13_rec $mode (exit $rc): $(cat "$mode.out" "$mode.err")"
  echo "$mode: $(tr '\n' ';' <"$mode.err")"
done
curl -sf --max-time 5 "$M5S_ADMIN/healthz" >/dev/null || m5s_fail "m5s is not healthy"
# Traffic secrets and K_AF never reach the log.
grep -qi "$KAF" "$M5S_LOG" && m5s_fail "K_AF appears in the m5s log"
grep -q "TRAFFIC_SECRET" "$M5S_LOG" && m5s_fail "a traffic secret appears in the m5s log"
stop_m5s
echo "m5s TLS 1.3 records: ok"
