#!/usr/bin/env bash
# Interop: a ClientHello with a valid DTLS cookie does not tear down an established
# association unless its handshake completes (RFC 6347 §4.2.8; docs/security.md). A DTLS UE
# (dtls_rehello.c, OpenSSL) registers over session A; then, from the very same address and
# port, a second client B gets a HelloVerifyRequest and answers with the valid cookie:
#  - forge: B goes no further; session A keeps working (a second REG over it is answered);
#  - complete: B finishes its handshake with the UE's K_AF; B's REG is answered and A is gone.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI1=001010000000401
KAUSF1=404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f

TOOL="$M5_TMP/dtls_rehello"
cc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -o "$TOOL" "$M5_SRC/tests/interop/dtls_rehello.c" \
  $(pkg-config --cflags --libs openssl) 2>build.log || fail "building dtls_rehello: $(cat build.log)"

make_pki
start_aanf
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
AKID=$(akma_derive "$SUPI1" "$KAUSF1" tls12:00a8 | kv_field akid)
KAF=$(akma_derive "$SUPI1" "$KAUSF1" tls12:00a8 | kv_field kaf)
[[ -n $AKID && -n $KAF ]] || fail "m5ctl akma derive gave no A-KID or K_AF"

for mode in forge complete; do
  rc=0
  timeout 30 "$TOOL" "$M5S_PORT" "$KAF" "$AKID" ue1 "$mode" >"$mode.out" 2>"$mode.err" || rc=$?
  [[ $rc == 0 && $(cat "$mode.out") == OK ]] ||
    m5s_fail "dtls_rehello $mode (exit $rc): $(cat "$mode.out" "$mode.err")"
  echo "$mode: $(tr '\n' ';' <"$mode.err")"
done
grep -q 'new DTLS handshake beside the open association' "$M5S_LOG" ||
  m5s_fail "m5s did not log the handshake beside the association"
grep -q 'peer started a new association' "$M5S_LOG" ||
  m5s_fail "m5s did not close the replaced association"
curl -sf --max-time 5 "$M5S_ADMIN/healthz" >/dev/null || m5s_fail "m5s is not healthy"
stop_m5s
echo "m5s DTLS re-hello: ok"
