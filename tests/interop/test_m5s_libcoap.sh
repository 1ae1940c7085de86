#!/usr/bin/env bash
# Interop: m5s's MSGin5G-1 against libcoap's client library (libcoap 4.3, OpenSSL flavour),
# a CoAP stack that is not ours. tests/interop/coap_akma_client.c opens a DTLS 1.2 session
# keyed by AKMA with a binary K_AF (libcoap's CLI takes text keys only), registers as ue2 and
# serves its own resource msgin5g on that session; `m5c send` (ue1) sends it a MSG, which m5s
# pushes over the session as a confirmable POST; libcoap answers 2.04 with a MSGRESP and the
# program prints the body. libcoap offers every PSK suite and m5s picks by its preference, so
# the program gets one K_AF per (D)TLS 1.2 suite and chooses by the negotiated one.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI1=001010000000201
KAUSF1=5051525354555657585960616263646566676869707172737475767778797a7b
SUPI2=001010000000202
KAUSF2=a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf

# --- build the libcoap peer (not part of the CMake build: it needs libcoap3-dev) ---
pkg-config --exists libcoap-3-openssl ||
  fail "libcoap-3-openssl not found by pkg-config: install libcoap3-dev (make deps does)"
CLIENT="$M5_TMP/coap_akma_client"
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -o "$CLIENT" \
  "$M5_SRC/tests/interop/coap_akma_client.c" $(pkg-config --cflags --libs libcoap-3-openssl openssl) \
  2>build.log || fail "building coap_akma_client: $(cat build.log)"

make_pki
start_aanf
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
provision_ue ue2 "$SUPI2" "$KAUSF2"

AKID2=$(akma_derive "$SUPI2" "$KAUSF2" tls13 | kv_field akid)
KAFS=()
for suite in ccac 00a8 c0a8; do # m5s's (D)TLS 1.2 suites (docs/protocol.md §1)
  k=$(akma_derive "$SUPI2" "$KAUSF2" "tls12:$suite" | kv_field kaf)
  [[ -n $k ]] || fail "m5ctl akma derive --ua tls12:$suite gave no kaf"
  KAFS+=(--kaf "$suite=$k")
done


# --- ue2 = libcoap: register, then wait for one pushed MSG ---
timeout 60 "$CLIENT" --port "$M5S_PORT" "${KAFS[@]}" --akid "$AKID2" --ue ue2 --timeout 30 \
  -v >lc.out 2>lc.err &
LC=$!
track_pid "$LC"
wait_file_line lc.err '^registered 2\.0[14] ' 20 "$LC" ||
  m5s_fail "coap_akma_client did not register:
$(cat lc.err lc.out)"
grep -q "suite 0xccac" lc.err ||
  m5s_fail "m5s did not pick ECDHE-PSK-CHACHA20-POLY1305 first: $(grep suite lc.err)"

# --- ue1 (m5c send) -> ue2 (libcoap) ---
m5c_send ue1 dtls ue2 "hello libcoap" "$M5_TMP/send.out" ||
  m5s_fail "m5c send failed: $(cat "$M5_TMP/send.out")"
wait_pid_rc "$LC" 30 && rc=$WAIT_RC
[[ $rc == 0 ]] || m5s_fail "coap_akma_client exited $rc:
$(cat lc.err lc.out)"
line=$(head -n 1 lc.out)
PAYLOAD=$(printf 'hello libcoap' | base64 -w0)
node -e '
  const m = JSON.parse(process.argv[1]);
  const ok = m.msgType === "MSG" && m.oriAddr.addr === "ue1" && m.destAddr.addr === "ue2" &&
             m.payload === process.argv[2] && typeof m.msgId === "string";
  process.exit(ok ? 0 : 1);' "$line" "$PAYLOAD" ||
  m5s_fail "libcoap received an unexpected MSG: $line"

# The sender saw the delivery acknowledged (not stored, not failed).
grep -q "DELY_FAILED\|DELY_STORED" "$M5_TMP/send.out" &&
  m5s_fail "m5c send: delivery not immediate: $(cat "$M5_TMP/send.out")"

stop_m5s
echo "m5s libcoap interop: ok"
