#!/usr/bin/env bash
# Interop: the DTLS 1.2 record layer m5s runs itself once a UE's first application data has
# authenticated (src/server/ue/ue_dtls12rec.c, ue_dtls.c), against OpenSSL's client
# (dtls12_rec.c), for each suite m5s offers UEs over DTLS (PSK-AES128-GCM-SHA256,
# PSK-AES128-CCM8, ECDHE-PSK-CHACHA20-POLY1305, each with its own K_AF):
#  - all: replayed, too old (70 behind), tampered records and one with a forged sequence
#    number far ahead get no answer and change nothing; reordered records are both answered;
#    1,000 CoAP pings in a row are answered, each record checked by OpenSSL's client; a
#    renegotiation gets a no_renegotiation warning and the session stays open (RFC 6347
#    §4.1.2.6, §4.1.2.7; RFC 5746 §4.5);
#  - close: close_notify is answered with close_notify and the session is closed;
# m5s says it took over each session's records; the server stays healthy; no key in its log.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI1=001010000000601
KAUSF1=606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f

TOOL="$M5_TMP/dtls12_rec"
cc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -o "$TOOL" "$M5_SRC/tests/interop/dtls12_rec.c" \
  $(pkg-config --cflags --libs openssl) 2>build.log || fail "building dtls12_rec: $(cat build.log)"

make_pki
start_aanf
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"

dtls_sessions() {
  curl -sf --max-time 5 "$M5S_ADMIN/metrics" | sed -n 's/^msgin5g_sessions{transport="dtls"} //p'
}

for pair in PSK-AES128-GCM-SHA256:00a8 PSK-AES128-CCM8:c0a8 ECDHE-PSK-CHACHA20-POLY1305:ccac; do
  suite=${pair%:*} id=${pair#*:}
  AKID=$(akma_derive "$SUPI1" "$KAUSF1" "tls12:$id" | kv_field akid)
  KAF=$(akma_derive "$SUPI1" "$KAUSF1" "tls12:$id" | kv_field kaf)
  [[ -n $AKID && -n $KAF ]] || fail "m5ctl akma derive gave no A-KID or K_AF for $suite"
  for mode in all close; do
    rc=0
    timeout 120 "$TOOL" "$M5S_PORT" "$KAF" "$AKID" ue1 "$suite" "$mode" >"$suite.$mode.out" \
      2>"$suite.$mode.err" || rc=$?
    [[ $rc == 0 && $(cat "$suite.$mode.out") == OK ]] ||
      m5s_fail "dtls12_rec $suite $mode (exit $rc): $(cat "$suite.$mode.out" "$suite.$mode.err")"
    echo "$suite $mode: $(tr '\n' ';' <"$suite.$mode.err")"
    if [[ $mode == all ]]; then
      # The refused renegotiation left the session open (the next REG, of the close run, ends it).
      [[ $(dtls_sessions) == 1 ]] || m5s_fail "$suite: the session did not survive the refused renegotiation"
    fi
  done
  grep -qi "$KAF" "$M5S_LOG" && m5s_fail "K_AF appears in the m5s log"
done
n=$(grep -c 'DTLS records handled by m5s from here' "$M5S_LOG" || true)
[[ $n -ge 6 ]] || m5s_fail "m5s took over the records of $n sessions, expected 6"
[[ $(grep -c 'renegotiation refused' "$M5S_LOG" || true) -ge 3 ]] || m5s_fail "no renegotiation refused in the log"
wait_file_line "$M5S_LOG" 'closed: peer closed' 10 || m5s_fail "m5s did not log the peer's close_notify"
curl -sf --max-time 5 "$M5S_ADMIN/healthz" >/dev/null || m5s_fail "m5s is not healthy"
stop_m5s
echo "m5s DTLS 1.2 records: ok"
