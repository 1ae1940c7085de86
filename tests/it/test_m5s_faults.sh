#!/usr/bin/env bash
# Integration: m5s's answers to bad input (docs/protocol.md §1, §3, §5), each with its precise
# error, and after each a good exchange (m5c send ue1 -> ue2, ue2 listening with m5c over DTLS
# the whole time) proving the server keeps serving:
#  - CoAP (coap_raw.py over openssl s_client, both transports): malformed JSON 4.00, a missing
#    mandatory IE 4.00 naming it, a wrong Content-Format 4.15, a body over coap.max_body (2048
#    here) 4.13 with Size1, a first request that is not REG 4.01, an oriAddr that is not the
#    session's 4.03, a REG of another subscriber's UE Service ID 4.03; m5c's view of 4.13/4.03;
#  - (D)TLS (openssl s_client and m5c): a wrong PSK, an unknown A-KID (unknown_psk_identity), an
#    SNI that is not the server's (alert 112), TLS 1.1 and DTLS 1.0 (protocol_version), a
#    DHE-PSK-only client (handshake_failure, no shared cipher);
#  - peers that vanish mid-handshake (DTLS after the cookie exchange, TCP after half a
#    ClientHello; both are dropped at the handshake timeout) and a flood of 5000 DTLS
#    ClientHellos from 250 source ports: a real client still registers at once, m5s is alive.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
RAW="$M5_SRC/tests/interop/coap_raw.py"
MAX_BODY=2048

SUPI1=001010000000301
KAUSF1=a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
SUPI2=001010000000302
KAUSF2=c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0

make_pki
start_aanf
start_m5s "coap: {max_body: $MAX_BODY}"
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"

AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAKMA1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kakma)
KAF1_TLS=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
KAF1_DTLS=$(akma_derive "$SUPI1" "$KAUSF1" tls12:00a8 | kv_field kaf) # PSK-AES128-GCM-SHA256
[[ -n $AKID1 && -n $KAKMA1 && -n $KAF1_TLS && -n $KAF1_DTLS ]] ||
  fail "m5ctl akma derive gave no A-KID/K_AKMA/K_AF"
BAD_KAF_TLS=$(printf '%s' "$KAF1_TLS" | tr '0-9a-f' '1-9a-f0')
BAD_KAKMA=$(printf '%s' "$KAKMA1" | tr '0-9a-f' '1-9a-f0')
NO_AKID="0000.bm9ib2R5LWtub3dzLXRoaXMta2V5@5gc.mnc001.mcc001.3gppnetwork.org"

cat >dtls_peer.py <<'EOF'
"""DTLS 1.2 ClientHello peers for m5s fault tests (stdlib only).

  dtls_peer.py vanish PORT SECS  ClientHello, HelloVerifyRequest, ClientHello with the cookie,
                                 read the server's flight, print "PEER <port> ...", then stay
                                 silent for SECS s (holding the port).
  dtls_peer.py flood PORT N SOCKS SECS
                                 N first ClientHellos from SOCKS source ports within ~SECS s;
                                 prints "SENT n HVR m" (HelloVerifyRequests read back).
  dtls_peer.py halfopen PORT N   N peers that each complete the cookie exchange and vanish.
"""
import os, socket, struct, sys, time

SNI = b"localhost"


def client_hello(cookie=b"", seq=0):
    ext = b""
    sn = struct.pack("!BH", 0, len(SNI)) + SNI
    sn = struct.pack("!H", len(sn)) + sn
    ext += struct.pack("!HH", 0x0000, len(sn)) + sn
    ext += struct.pack("!HH", 0x0017, 0)              # extended_master_secret
    ext += struct.pack("!HHB", 0xFF01, 1, 0)          # renegotiation_info
    suites = [0x00A8, 0xC0A8]
    body = b"\xfe\xfd" + os.urandom(32) + b"\x00"     # version, random, empty session id
    body += struct.pack("!B", len(cookie)) + cookie
    body += struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
    body += b"\x01\x00" + struct.pack("!H", len(ext)) + ext
    n = len(body)
    hs = struct.pack("!B", 1) + n.to_bytes(3, "big") + struct.pack("!H", seq) + \
        (0).to_bytes(3, "big") + n.to_bytes(3, "big") + body
    return struct.pack("!BHH", 22, 0xFEFD, 0) + seq.to_bytes(6, "big") + \
        struct.pack("!H", len(hs)) + hs


def hvr_cookie(d):
    # record(13) + handshake header(12): type 3 = hello_verify_request; version(2), cookie
    if len(d) < 13 + 12 + 3 or d[0] != 22 or d[13] != 3:
        return None
    n = d[13 + 12 + 2]
    return d[13 + 12 + 3:13 + 12 + 3 + n]


def handshake_types(d):
    out, i = [], 0
    while i + 13 <= len(d):
        ln = struct.unpack("!H", d[i + 11:i + 13])[0]
        if d[i] == 22 and i + 13 < len(d):
            out.append(d[i + 13])
        elif d[i] == 21:
            out.append("alert%d" % d[i + 14])
        i += 13 + ln
    return out


def cookie_exchange(s):
    s.send(client_hello())
    c = hvr_cookie(s.recv(4096))
    if c is None:
        raise SystemExit("no HelloVerifyRequest")
    s.send(client_hello(c, 1))
    types = []
    end = time.monotonic() + 3
    while 14 not in types and time.monotonic() < end:  # until ServerHelloDone
        types += handshake_types(s.recv(4096))
    return types


def main():
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "vanish":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.connect(("127.0.0.1", port))
        types = cookie_exchange(s)
        print("PEER %d flight %s" % (s.getsockname()[1], types), flush=True)
        if 2 not in types:
            raise SystemExit("no ServerHello: %s" % types)
        time.sleep(float(sys.argv[3]))  # silent, but holding the port: no one else gets it
    elif cmd == "halfopen":
        n = int(sys.argv[3])
        socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(3)
            s.connect(("127.0.0.1", port))
            cookie_exchange(s)
            socks.append(s)
        print("HALFOPEN %d" % len(socks), flush=True)
    elif cmd == "flood":
        n, nsock, secs = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        socks = []
        for _ in range(nsock):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect(("127.0.0.1", port))
            socks.append(s)
        sent = hvr = 0
        t0 = time.monotonic()
        burst = max(1, n // 20)
        while sent < n:
            for _ in range(min(burst, n - sent)):
                try:
                    socks[sent % nsock].send(client_hello())
                except (BlockingIOError, ConnectionRefusedError):
                    pass
                sent += 1
            for s in socks:
                while True:
                    try:
                        if hvr_cookie(s.recv(4096)) is not None:
                            hvr += 1
                    except (BlockingIOError, ConnectionRefusedError):
                        break
            time.sleep(max(0, t0 + secs * sent / n - time.monotonic()))
        print("SENT %d HVR %d in %.1fs" % (sent, hvr, time.monotonic() - t0), flush=True)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
EOF

# ---- helpers ---------------------------------------------------------------------------------

# ue2 listens over DTLS for the whole test; every good exchange is one message to it.
m5c_listen_bg ue2 dtls listen2.out 1000 150
LISTEN2=$M5C_LISTEN_PID
GOOD=0

# good WHAT [dtls|tls]: m5s still serves: ue1 sends a MSG to ue2 (a new session), m5c exits 0,
# and ue2's listener prints it; m5s is alive.
good() {
  local what=$1 tr=${2:-} id
  GOOD=$((GOOD + 1))
  [[ -n $tr ]] || { if ((GOOD % 2)); then tr=tls; else tr=dtls; fi; }
  id="good-$GOOD"
  kill -0 "$M5S_PID" 2>/dev/null || m5s_fail "m5s died after: $what"
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri "$tr")" send \
    --to ue:ue2 --msg-id "$id" --payload "after $what" >"$id.out" 2>&1 ||
    m5s_fail "good exchange ($tr) after $what failed: $(cat "$id.out")"
  grep -q "\"msgId\":\"$id\"" "$id.out" || m5s_fail "good exchange after $what: $(cat "$id.out")"
  wait_file_line listen2.out "\"msgId\":\"$id\"" 10 "$LISTEN2" ||
    m5s_fail "ue2 did not receive the good exchange after $what: $(cat listen2.out)"
  echo "ok: $what"
}

# raw dtls|tls OUT STEPS...: coap_raw.py as ue1 over that transport; must succeed.
raw() {
  local tr=$1 out=$2 kaf
  shift 2
  if [[ $tr == dtls ]]; then kaf=$KAF1_DTLS; else kaf=$KAF1_TLS; fi
  timeout 60 "$PY" "$RAW" "--$tr" --port "$M5S_PORT" --kaf "$kaf" --akid "$AKID1" \
    --timeout 10 -- "$@" >"$out" 2>&1 || m5s_fail "coap_raw ($tr) failed:$(printf '\n')$(cat "$out")"
}

# m5c_expect RC GREP_ERE OUT ARGS...: m5c with ARGS (no config file) exits RC and its output
# matches GREP_ERE.
m5c_expect() {
  local want=$1 re=$2 out=$3 rc=0
  shift 3
  timeout 30 "$M5_BIN/m5c" "$@" >"$out" 2>&1 || rc=$?
  [[ $rc == "$want" ]] || m5s_fail "m5c $* exited $rc, want $want: $(cat "$out")"
  grep -Eq -- "$re" "$out" || m5s_fail "m5c $*: output does not match /$re/: $(cat "$out")"
}

# ue1_args dtls|tls: m5c options for ue1 on the command line (for wrong-key variants).
ue1_args() {
  echo --server "$(m5c_uri "$1")" --af-fqdn localhost --ue-svc-id ue1
}

# s_client_refused OUT GREP_ERE ARGS...: openssl s_client against m5s fails and its output
# matches GREP_ERE (the alert).
s_client_refused() {
  local out=$1 re=$2 rc=0
  shift 2
  timeout 15 openssl s_client -quiet -connect "127.0.0.1:$M5S_PORT" "$@" </dev/null >"$out" 2>&1 ||
    rc=$?
  [[ $rc != 0 && $rc != 124 ]] || m5s_fail "s_client $* exited $rc (want a refusal): $(cat "$out")"
  grep -Eq -- "$re" "$out" || m5s_fail "s_client $*: want /$re/: $(cat "$out")"
}

$PY "$RAW" --selftest >/dev/null || fail "coap_raw.py --selftest"
good "start"

# ---- CoAP-level faults, on both transports ---------------------------------------------------
BIG=$(head -c 3000 /dev/zero | tr '\0' x)
for tr in tls dtls; do
  MSG_NO_ID='{"msgType":"MSG","oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"UE","addr":"ue2"},"payload":"aGk="}'
  raw "$tr" "coap-$tr.out" \
    "msg:ue1:ue2:first-$tr:aGk=" 'expect:4.01:diag~REG first' \
    reg:ue1 'expect:2.01|2.04' \
    'json:{"msgType":"MSG","oriAddr":' 'expect:4.00:diag~not JSON' reg:ue1 expect:2.04 \
    'json:[1,2,3]' 'expect:4.00' reg:ue1 expect:2.04 \
    "json:$MSG_NO_ID" 'expect:4.00:diag~msgId' reg:ue1 expect:2.04 \
    'json:{"msgType":"REG"}' 'expect:4.00:diag~ueSvcId' reg:ue1 expect:2.04 \
    'req:msgin5g:0:{"msgType":"REG","ueSvcId":"ue1"}' 'expect:4.15:diag~Content-Format' \
    reg:ue1 expect:2.04 \
    'req:msgin5g:-:{"msgType":"REG","ueSvcId":"ue1"}' 'expect:4.15:diag~Content-Format' \
    reg:ue1 expect:2.04 \
    "json:{\"msgType\":\"MSG\",\"pad\":\"$BIG\"}" expect:4.13 reg:ue1 expect:2.04 \
    "msg:ue2:ue1:ori-$tr:aGk=" 'expect:4.03:diag~oriAddr' reg:ue1 expect:2.04 \
    reg:ue2 'expect:4.03:diag~ueSvcId' reg:ue1 expect:2.04 \
    "msg:ue1:ue2:raw-ok-$tr:aGk=" expect:2.04:status=-
  # 4.13 carries Size1 = coap.max_body (option 60, 2048 = 0x0800)
  grep -Eq "4\.13 .*opt60=0800" "coap-$tr.out" ||
    m5s_fail "4.13 without Size1 $MAX_BODY ($tr): $(grep -E '4\.13' "coap-$tr.out")"
  wait_file_line listen2.out "\"msgId\":\"raw-ok-$tr\"" 10 "$LISTEN2" ||
    m5s_fail "ue2 did not get the raw MSG after the faults ($tr)"
  good "CoAP faults over $tr" "$tr"

  # a fresh session whose first request is a REG of another subscriber's UE Service ID
  raw "$tr" "foreign-$tr.out" reg:ue2 'expect:4.03:diag~not bound' reg:ue1 'expect:2.01|2.04'
  good "REG of a foreign UE Service ID ($tr)" "$tr"

  # m5c: the same refusals as the CLI reports them (exit 1, the code and diagnostic on stderr)
  m5c_expect 1 '4\.03' "m5c-foreign-$tr.out" --config "$M5_TMP/ue1.yaml" \
    --server "$(m5c_uri "$tr")" --ue-svc-id ue2 register
  # (DTLS: block-wise, the server answers 4.13; TLS: the server's CSM announces a
  # Max-Message-Size for max_body, so m5c does not send it)
  if [[ $tr == dtls ]]; then re='4\.13'; else re="Max-Message-Size \($((1152 + MAX_BODY)) bytes\)"; fi
  m5c_expect 1 "$re" "m5c-big-$tr.out" --config "$M5_TMP/ue1.yaml" \
    --server "$(m5c_uri "$tr")" send --to ue:ue2 --payload "$BIG"
  good "m5c refused REG and oversized MSG ($tr)" "$tr"
done

# ---- (D)TLS-level faults ---------------------------------------------------------------------
# A wrong PSK. TLS 1.3: the binder does not verify (illegal_parameter; decrypt_error would do).
s_client_refused wrongpsk.out 'alert (illegal parameter|decrypt error)|alert number (47|51)' \
  -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256 -psk "$BAD_KAF_TLS" \
  -psk_identity "3GPP-AKMA$AKID1" -servername localhost
# shellcheck disable=SC2046
m5c_expect 3 'handshake failed.*alert (illegal parameter|decrypt error)' m5c-wrongpsk-tls.out \
  $(ue1_args tls) --kakma "$BAD_KAKMA" --akid "$AKID1" register
# DTLS 1.2: a Finished under the wrong key is dropped silently (RFC 6347 §4.1.2.7): no session
# shellcheck disable=SC2046
m5c_expect 3 'm5c: register: ' m5c-wrongpsk-dtls.out \
  $(ue1_args dtls) --kakma "$BAD_KAKMA" --akid "$AKID1" --timeout 3 register
good "a wrong PSK"

# An A-KID the AAnF does not know: unknown_psk_identity (115), on both transports.
s_client_refused noakid-tls.out 'unknown psk identity|alert number 115' \
  -tls1_3 -psk "$KAF1_TLS" -psk_identity "3GPP-AKMA$NO_AKID" -servername localhost
s_client_refused noakid-dtls.out 'unknown psk identity|alert number 115' \
  -dtls1_2 -cipher PSK-AES128-GCM-SHA256 -psk "$KAF1_DTLS" -psk_identity "3GPP-AKMA$NO_AKID" \
  -servername localhost
for tr in tls dtls; do
  # shellcheck disable=SC2046
  m5c_expect 3 'unknown psk identity|alert number 115' "m5c-noakid-$tr.out" \
    $(ue1_args "$tr") --kakma "$KAKMA1" --akid "$NO_AKID" register
done
good "an unknown A-KID"

# An SNI that is not the server's: unrecognized_name (112).
s_client_refused sni-tls.out 'unrecognized name|alert number 112' \
  -tls1_3 -psk "$KAF1_TLS" -psk_identity "3GPP-AKMA$AKID1" -servername other.example
s_client_refused sni-dtls.out 'unrecognized name|alert number 112' \
  -dtls1_2 -cipher PSK-AES128-GCM-SHA256 -psk "$KAF1_DTLS" -psk_identity "3GPP-AKMA$AKID1" \
  -servername other.example
for tr in tls dtls; do
  m5c_expect 3 'unrecognized name|alert number 112' "m5c-sni-$tr.out" \
    --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri "$tr")" --af-fqdn other.example register
done
good "an unknown SNI"

# TLS 1.1 and DTLS 1.0: protocol_version (70). OpenSSL 3's s_client still sends these
# ClientHellos at its default security level; with @SECLEVEL=0 it also offers a suite it would
# accept, so the refusal is the server's either way.
s_client_refused tls11.out 'alert protocol version|alert number 70' \
  -tls1_1 -psk "$KAF1_DTLS" -psk_identity "3GPP-AKMA$AKID1" -servername localhost
s_client_refused tls11-sec0.out 'alert protocol version|alert number 70' \
  -tls1_1 -cipher 'PSK-AES128-CBC-SHA:@SECLEVEL=0' -psk "$KAF1_DTLS" \
  -psk_identity "3GPP-AKMA$AKID1" -servername localhost
s_client_refused dtls10.out 'alert protocol version|alert number 70' \
  -dtls1 -psk "$KAF1_DTLS" -psk_identity "3GPP-AKMA$AKID1" -servername localhost
s_client_refused dtls10-sec0.out 'alert protocol version|alert number 70' \
  -dtls1 -cipher 'PSK-AES128-CBC-SHA:@SECLEVEL=0' -psk "$KAF1_DTLS" \
  -psk_identity "3GPP-AKMA$AKID1" -servername localhost
good "TLS 1.1 and DTLS 1.0"

# DHE-PSK only: handshake_failure (40), the server finds no shared cipher.
before=$(m5s_log_count "no shared cipher")
s_client_refused dhe.out 'alert handshake failure|alert number 40' \
  -dtls1_2 -cipher DHE-PSK-AES128-GCM-SHA256 -psk "$KAF1_DTLS" \
  -psk_identity "3GPP-AKMA$AKID1" -servername localhost
s_client_refused dhe-tls12.out 'alert handshake failure|alert number 40' \
  -tls1_2 -cipher DHE-PSK-AES128-GCM-SHA256 -psk "$KAF1_DTLS" \
  -psk_identity "3GPP-AKMA$AKID1" -servername localhost
(($(m5s_log_count "no shared cipher") >= before + 2)) || m5s_fail "m5s did not log 'no shared cipher'"
good "a DHE-PSK-only client"

# ---- peers that vanish mid-handshake ----------------------------------------------------------
# DTLS: the cookie exchange, the server's flight (ServerHello .. ServerHelloDone), then nothing.
"$PY" dtls_peer.py vanish "$M5S_PORT" 60 >vanish.out 2>&1 &
VANISH_PID=$!
track_pid "$VANISH_PID"
wait_file_line vanish.out '^PEER ' 10 "$VANISH_PID" || m5s_fail "dtls_peer vanish: $(cat vanish.out)"
VANISH_PORT=$(sed -n 's/^PEER \([0-9]*\) .*/\1/p' vanish.out)
VANISH_T0=$(now_ms)
# TCP: half a TLS ClientHello on a connection that stays open, and one that sends nothing.
exec 3<>"/dev/tcp/127.0.0.1/$M5S_PORT"
exec 4<>"/dev/tcp/127.0.0.1/$M5S_PORT"
printf '\026\003\001\002\000\001\000\001\374\003\003' >&3
good "half-open DTLS and TLS handshakes (dtls)" dtls
good "half-open DTLS and TLS handshakes (tls)" tls

# ---- a flood of ClientHellos -------------------------------------------------------------------
"$PY" dtls_peer.py flood "$M5S_PORT" 5000 250 3 >flood.out 2>&1 || m5s_fail "flood: $(cat flood.out)"
echo "flood: $(cat flood.out)"
kill -0 "$M5S_PID" 2>/dev/null || m5s_fail "m5s died in the ClientHello flood"
curl -sf --max-time 5 "$M5S_ADMIN/healthz" >/dev/null || m5s_fail "m5s /healthz after the flood"
t0=$(now_ms)
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri dtls)" register \
  --timeout 5 >flood-reg.out 2>&1 || m5s_fail "register after the flood: $(cat flood-reg.out)"
ms=$(($(now_ms) - t0))
((ms < 3000)) || m5s_fail "register after the flood took $ms ms"
echo "register after the flood: $ms ms"
good "a ClientHello flood (dtls)" dtls
good "a ClientHello flood (tls)" tls

# ---- the half-open handshakes are dropped at the handshake timeout (10 s) ----------------------
left=$((13000 - ($(now_ms) - VANISH_T0)))
((left > 1000)) || left=1000
secs=$(((left + 999) / 1000))
wait_file_line "$M5S_LOG" "127\.0\.0\.1:$VANISH_PORT: (DTLS )?handshake (timed out|retransmissions exhausted)" \
  "$secs" || m5s_fail "the vanished DTLS peer ($VANISH_PORT) was never dropped"
# and the server closed the TCP connections that never finished theirs (EOF at once)
timeout 5 cat <&3 >/dev/null || m5s_fail "the half-open TLS connection is still open after the handshake timeout"
timeout 5 cat <&4 >/dev/null || m5s_fail "the silent TLS connection is still open after the handshake timeout"
exec 3>&- 4>&-
kill -KILL "$VANISH_PID" 2>/dev/null || true
wait "$VANISH_PID" 2>/dev/null || true
good "the handshake timeouts"

kill -TERM "$LISTEN2" 2>/dev/null || true
wait_pid_rc "$LISTEN2" 10
stop_m5s
echo "m5s faults: ok"
