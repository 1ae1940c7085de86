#!/usr/bin/env bash
# Interop: m5s's MSGin5G-1 (docs/protocol.md) spoken by a UE that is not ours: `openssl
# s_client` does the AKMA-keyed (D)TLS (PSK = K_AF from `m5ctl akma derive`, identity
# "3GPP-AKMA" + A-KID, SNI localhost) and tests/interop/coap_raw.py encodes and decodes the
# CoAP itself (RFC 7252 over DTLS 1.2, RFC 8323 over TLS 1.3). Over both transports:
#  - ue1 (s_client) registers and sends a MSG to ue2, which listens with `m5c listen` and
#    must print it;
#  - ue1 (s_client) receives, and acknowledges with 2.04 + MSGRESP, a MSG that `m5c send`
#    sends it from ue2;
# plus the session rules anyone's client meets first: a first request that is not REG (4.01),
# a foreign UE Service ID (4.03), a foreign oriAddr (4.03), an unknown recipient (DELY_FAILED
# UNKNOWN_RECIPIENT), an unknown SNI (alert 112) and a wrong K_AF (no session).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
RAW="$M5_SRC/tests/interop/coap_raw.py"

SUPI1=001010000000101
KAUSF1=101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f
SUPI2=001010000000102
KAUSF2=303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f

$PY "$RAW" --selftest >/dev/null || fail "coap_raw.py --selftest"

make_pki
start_aanf
start_m5s
provision_ue ue1 "$SUPI1" "$KAUSF1"
provision_ue ue2 "$SUPI2" "$KAUSF2"

AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1_TLS=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
KAF1_DTLS=$(akma_derive "$SUPI1" "$KAUSF1" tls12:00a8 | kv_field kaf) # PSK-AES128-GCM-SHA256
[[ -n $AKID1 && -n $KAF1_TLS && -n $KAF1_DTLS && $KAF1_TLS != "$KAF1_DTLS" ]] ||
  fail "m5ctl akma derive gave no A-KID/K_AF"

m5c_config ue2 "$SUPI2" "$KAUSF2" # writes $M5_TMP/ue2-{dtls,tls}.yaml

# raw TRANSPORT OUT STEPS...: coap_raw.py as ue1 over TRANSPORT (dtls|tls), output in OUT.
raw() {
  local tr=$1 out=$2 kaf
  shift 2
  if [[ $tr == dtls ]]; then kaf=$KAF1_DTLS; else kaf=$KAF1_TLS; fi
  timeout 60 "$PY" "$RAW" "--$tr" --port "$M5S_PORT" --kaf "$kaf" --akid "$AKID1" \
    --timeout 15 -- "$@" >"$out" 2>&1
}
raw_ok() {
  local tr=$1 out=$2
  raw "$@" || m5s_fail "coap_raw ($tr) failed:$(printf '\n')$(cat "$out")"
}

for tr in tls dtls; do
  # --- ue1 (s_client) -> ue2 (m5c listen) ---
  m5c_listen_start ue2 "$tr" "$M5_TMP/listen-$tr.out"
  pl=$(printf 'hello over %s from s_client' "$tr" | base64 -w0)
  raw_ok "$tr" "raw-send-$tr.out" reg:ue1 'expect:2.01|2.04' \
    "msg:ue1:ue2:raw-$tr-1:$pl" expect:2.04:status=-
  wait_pid_rc "$M5C_LISTEN_PID" 20 && rc=$WAIT_RC
  [[ $rc == 0 ]] || m5s_fail "m5c listen ($tr) exited $rc: $(cat "$M5_TMP/listen-$tr.out")"
  grep -q "hello over $tr from s_client" "$M5_TMP/listen-$tr.out" ||
    m5s_fail "m5c listen ($tr) did not print the message: $(cat "$M5_TMP/listen-$tr.out")"

  # --- ue2 (m5c send) -> ue1 (s_client), which answers 2.04 MSGRESP ---
  raw "$tr" "raw-recv-$tr.out" reg:ue1 'expect:2.01|2.04' \
    "recv:from=ue2:to=ue1:payload=$(printf 'to s_client over %s' "$tr" | base64 -w0)" &
  rpid=$!
  track_pid "$rpid"
  wait_file_line "raw-recv-$tr.out" '^OK reg' 20 "$rpid" ||
    m5s_fail "coap_raw ($tr) did not register: $(cat "raw-recv-$tr.out")"
  m5c_send ue2 "$tr" ue1 "to s_client over $tr" "$M5_TMP/send-$tr.out" ||
    m5s_fail "m5c send ($tr) failed: $(cat "$M5_TMP/send-$tr.out")"
  wait_pid_rc "$rpid" 30 && rc=$WAIT_RC
  [[ $rc == 0 ]] || m5s_fail "coap_raw ($tr) did not receive the MSG (rc $rc):
$(cat "raw-recv-$tr.out")"
  grep -q '^RECV {' "raw-recv-$tr.out" || m5s_fail "no RECV line: $(cat "raw-recv-$tr.out")"

  # --- session rules ---
  raw_ok "$tr" "rules-$tr.out" "msg:ue1:ue2:rules-$tr-0:aGk=" expect:4.01 \
    reg:ue2 expect:4.03 \
    reg:ue1 'expect:2.01|2.04' reg:ue1 expect:2.04 \
    "msg:ue2:ue1:rules-$tr-1:aGk=" expect:4.03 \
    "msg:ue1:nobody-$tr:rules-$tr-2:aGk=" expect:2.04:status=DELY_FAILED:failureCause=UNKNOWN_RECIPIENT \
    'json:{"msgType":"MSG","msgType":"MSG"}' expect:4.00 \
    "req:other:50:{}" expect:4.04 \
    'req:msgin5g:0:{"msgType":"REG","ueSvcId":"ue1"}' expect:4.15
done

# --- an SNI that is not one of the server's names: alert 112 (unrecognized_name) ---
if $PY "$RAW" --tls --port "$M5S_PORT" --kaf "$KAF1_TLS" --akid "$AKID1" --sni other.example \
  --timeout 10 -- reg:ue1 expect:2.01 >sni.out 2>&1; then
  m5s_fail "an unknown SNI was accepted: $(cat sni.out)"
fi
grep -q "alert number 112\|unrecognized name" sni.out ||
  m5s_fail "unknown SNI: want alert 112 (unrecognized_name): $(cat sni.out)"

# --- a wrong K_AF: no session (TLS 1.3: the binder does not verify; DTLS: no answer) ---
BAD=$(printf '%s' "$KAF1_TLS" | tr '0-9a-f' '1-9a-f0')
if $PY "$RAW" --tls --port "$M5S_PORT" --kaf "$BAD" --akid "$AKID1" --timeout 10 \
  -- reg:ue1 expect:2.01 >badkey.out 2>&1; then
  m5s_fail "a wrong K_AF was accepted (tls): $(cat badkey.out)"
fi
BAD=$(printf '%s' "$KAF1_DTLS" | tr '0-9a-f' '1-9a-f0')
if $PY "$RAW" --dtls --port "$M5S_PORT" --kaf "$BAD" --akid "$AKID1" --timeout 6 \
  -- reg:ue1 expect:2.01 >badkey-dtls.out 2>&1; then
  m5s_fail "a wrong K_AF was accepted (dtls): $(cat badkey-dtls.out)"
fi

# K_AF and K_AKMA never reach the server's log.
for k in "$KAF1_TLS" "$KAF1_DTLS" "$KAUSF1" "$KAUSF2"; do
  grep -qi "$k" "$M5S_LOG" && m5s_fail "a key appears in the m5s log"
done

stop_m5s
echo "m5s openssl interop: ok"
