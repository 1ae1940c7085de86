#!/usr/bin/env bash
# Integration: the real m5-aanf and m5s with the real client CLI (m5c): register -> send ->
# receive over DTLS and over TLS (docs/protocol.md, docs/client.md):
#  - ue1 (TLS) -> ue2 (DTLS) and ue2 -> ue1: the listener's JSON line (payload, payloadText,
#    oriAddr, destAddr, msgId) and the sender's MSGRESP line and exit 0;
#  - a 3000-byte payload (block-wise on DTLS, both legs) arrives intact; the same over TLS;
#  - the AAnF stopped (SIGSTOP) for 2 s: ue3's first register waits for it and succeeds after
#    SIGCONT, while ue1 -> ue2 sends (new handshakes with a cached K_AF) each complete quickly;
#  - the AAnF killed: a new UE's register fails with exit 3 within its timeout, while ue1 -> ue2
#    still works;
#  - a restart of m5s keeps the registrations (admin API `registered`), and after it ue2 listens
#    again and receives ue1's message.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3

SUPI1=001010000000201
KAUSF1=2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40
SUPI2=001010000000202
KAUSF2=4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60
SUPI3=001010000000203
KAUSF3=6162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80
SUPI4=001010000000204
KAUSF4=8182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0
WORKERS=2
# The AAnF is stopped for 2 s or more (a slow machine needs longer for the sends): m5s must
# keep waiting for it rather than time the request out at the default 3 s.
m5s_opts() { echo "workers: $WORKERS"; echo "aanf: {url: $AANF_URL, timeout_ms: 10000}"; }

make_pki
start_aanf
mapfile -t OPTS < <(m5s_opts)
start_m5s "${OPTS[@]}"
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
setup_ue ue3 "$SUPI3" "$KAUSF3"
setup_ue ue4 "$SUPI4" "$KAUSF4"
AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
AKID3=$(akma_derive "$SUPI3" "$KAUSF3" tls13 | kv_field akid)
[[ -n $AKID1 && -n $AKID3 ]] || fail "m5ctl akma derive gave no A-KID"

# m5c_run UE dtls|tls OUT ARGS...: m5c for UE against the running m5s (bounded by timeout 30).
m5c_run() {
  local ue=$1 tr=$2 out=$3
  shift 3
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri "$tr")" "$@" \
    >"$out" 2>"$out.err"
}

# check_reg OUT UE: m5c register's line: {"msgType":"REG","ueSvcId":UE,"expiry":...}.
check_reg() {
  $PY - "$1" "$2" <<'EOF' || m5s_fail "register output of $2: $(cat "$1") $(cat "$1.err" 2>/dev/null)"
import json, re, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
assert len(lines) == 1, lines
o = json.loads(lines[0])
assert o.get("msgType") == "REG" and o.get("ueSvcId") == sys.argv[2], o
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", o.get("expiry", "")), o
EOF
}

# send_msg UE dtls|tls DEST MSGID TEXT OUT: m5c send with that msgId; must exit 0 and print
# exactly one MSGRESP line for MSGID without status. Sets SEND_MS (wall time of the send).
send_msg() {
  local ue=$1 tr=$2 dest=$3 id=$4 text=$5 out=$6 t0 rc=0
  t0=$(now_ms)
  m5c_run "$ue" "$tr" "$out" send --to "ue:$dest" --msg-id "$id" --payload "$text" || rc=$?
  SEND_MS=$(($(now_ms) - t0))
  [[ $rc == 0 ]] || m5s_fail "m5c send $ue -> $dest ($tr, $id) exited $rc: $(cat "$out" "$out.err")"
  $PY - "$out" "$id" <<'EOF' || m5s_fail "send $ue -> $dest ($tr, $id): bad MSGRESP: $(cat "$out")"
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
assert len(lines) == 1, lines
o = json.loads(lines[0])
assert o.get("msgType") == "MSGRESP", o
assert o.get("msgId") == sys.argv[2], o
assert "status" not in o and "failureCause" not in o, o
EOF
}

# check_recv OUT MSGID ORI DEST TEXT: the listener printed exactly one line for MSGID, a MSG
# from ORI to DEST whose payload is base64(TEXT) and payloadText is TEXT.
check_recv() {
  $PY - "$@" <<'EOF' || m5s_fail "listener output for $2: $(head -c 2000 "$1")"
import base64, json, sys
path, mid, ori, dest, text = sys.argv[1:6]
found = []
for line in open(path, encoding="utf-8").read().splitlines():
    if not line.startswith("{"):
        continue
    o = json.loads(line)
    if o.get("msgId") == mid:
        found.append(o)
assert len(found) == 1, "want one line for %s, got %d" % (mid, len(found))
o = found[0]
assert o.get("msgType") == "MSG", o
assert o.get("oriAddr") == {"addrType": "UE", "addr": ori}, o.get("oriAddr")
assert o.get("destAddr") == {"addrType": "UE", "addr": dest}, o.get("destAddr")
raw = text.encode("utf-8")
assert base64.b64decode(o["payload"], validate=True) == raw, "payload differs"
assert o["payload"] == base64.b64encode(raw).decode(), "payload is not canonical base64"
assert o.get("payloadText") == text, "payloadText differs (%d vs %d chars)" % (
    len(o.get("payloadText", "")), len(text))
EOF
}

# wait_listener_done PID OUT: a `listen --count N` that has received its N messages exits 0.
wait_listener_done() {
  wait_pid_rc "$1" 20
  [[ $WAIT_RC == 0 ]] || m5s_fail "m5c listen exited $WAIT_RC: $(cat "$2")"
}

# wait_recv OUT MSGID: until the listener printed the message (10 s).
wait_recv() {
  wait_file_line "$1" "\"msgId\":\"$2\"" 10 || m5s_fail "message $2 not received: $(cat "$1")"
}

# tls_kaf_fetches AKID: TLS handshakes of AKID that had to wait for the AAnF (one per worker
# whose cache did not hold that K_AF yet).
tls_kaf_fetches() {
  awk -v akid="$1" '
    index($0, "waiting for the K_AF of A-KID " akid) { w[$4] = 1 }
    / session [0-9]+ open over tls / && ($4 in w) { n++; delete w[$4] }
    END { print n + 0 }' "$M5S_LOG"
}

# ---- register, then both directions ----------------------------------------------------------
m5c_run ue1 tls reg1.out register || m5s_fail "ue1 register (tls): $(cat reg1.out.err)"
check_reg reg1.out ue1
m5c_run ue2 dtls reg2.out register || m5s_fail "ue2 register (dtls): $(cat reg2.out.err)"
check_reg reg2.out ue2

T12='hello ue2 from ue1 over TLS -> DTLS, ünïcödé ✓'
m5c_listen_bg ue2 dtls listen2.out 1 30
L2=$M5C_LISTEN_PID
send_msg ue1 tls ue2 p2p-1 "$T12" send1.out
wait_listener_done "$L2" listen2.out
check_recv listen2.out p2p-1 ue1 ue2 "$T12"

T21='and back: ue2 over DTLS -> ue1 over TLS'
m5c_listen_bg ue1 tls listen1.out 1 30
L1=$M5C_LISTEN_PID
send_msg ue2 dtls ue1 p2p-2 "$T21" send2.out
wait_listener_done "$L1" listen1.out
check_recv listen1.out p2p-2 ue2 ue1 "$T21"

# ---- m5c exit 4: listen ends at --timeout before --count messages arrived ---------------------
m5c_listen_bg ue1 tls listen-short.out 2 3
LS=$M5C_LISTEN_PID
send_msg ue2 dtls ue1 p2p-3 'only one of two' send3.out
wait_pid_rc "$LS" 15
[[ $WAIT_RC == 4 ]] || m5s_fail "listen --count 2 --timeout 3 with one message exited $WAIT_RC, want 4"
check_recv listen-short.out p2p-3 ue2 ue1 'only one of two'

# ---- 3000 bytes: block-wise on DTLS (ue2 -> server and server -> ue1), then over TLS ---------
BIG=$($PY -c 'import random; r = random.Random(5); print("".join(r.choice(
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-") for _ in range(3000)))')
[[ ${#BIG} == 3000 ]] || fail "test payload is ${#BIG} bytes"
for tr in dtls tls; do
  m5c_listen_bg ue1 "$tr" "big-$tr.out" 1 30
  L1=$M5C_LISTEN_PID
  send_msg ue2 "$tr" ue1 "big-$tr" "$BIG" "send-big-$tr.out"
  wait_listener_done "$L1" "big-$tr.out"
  check_recv "big-$tr.out" "big-$tr" ue2 ue1 "$BIG"
done

# ---- the AAnF stopped for 2 s ----------------------------------------------------------------
# Each `m5c send` is a new handshake that lands on either worker; each worker caches K_AF on
# its own, so first get ue1's TLS K_AF cached on every worker (bounded).
m5c_listen_bg ue2 dtls listen-long.out 100 60
LL=$M5C_LISTEN_PID
for ((i = 0; i < 30; i++)); do
  (($(tls_kaf_fetches "$AKID1") >= WORKERS)) && break
  send_msg ue1 tls ue2 "warm-$i" "warm $i" "warm-$i.out"
  wait_recv listen-long.out "warm-$i"
done
(($(tls_kaf_fetches "$AKID1") >= WORKERS)) ||
  m5s_fail "ue1's K_AF not cached on all $WORKERS workers after 30 sends"

kill -STOP "$AANF_PID"
T0=$(now_ms)
waits3=$(m5s_log_count "waiting for the K_AF of A-KID $AKID3")
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue3.yaml" --server "$(m5c_uri dtls)" register \
  --timeout 15 >reg3.out 2>reg3.out.err &
R3=$!
track_pid "$R3"
for ((i = 0; i < 50; i++)); do
  (($(m5s_log_count "waiting for the K_AF of A-KID $AKID3") > waits3)) && break
  sleep 0.02
done
(($(m5s_log_count "waiting for the K_AF of A-KID $AKID3") > waits3)) ||
  { kill -CONT "$AANF_PID"; m5s_fail "ue3's handshake did not ask the AAnF for K_AF"; }
n=0
# at least 3 sends, and more until 1.5 s have passed (at most 10, and stop starting new ones
# after 6 s on a very slow machine)
while (((n < 3 || $(now_ms) - T0 < 1500) && $(now_ms) - T0 < 6000 && n < 10)); do
  send_msg ue1 tls ue2 "stall-$n" "while the AAnF is stopped: $n" "stall-$n.out"
  ((SEND_MS < 1500)) ||
    { kill -CONT "$AANF_PID"; m5s_fail "send stall-$n took $SEND_MS ms while the AAnF was stopped"; }
  wait_recv listen-long.out "stall-$n"
  check_recv listen-long.out "stall-$n" ue1 ue2 "while the AAnF is stopped: $n"
  echo "send stall-$n during the stall: $SEND_MS ms"
  n=$((n + 1))
done
((n >= 3)) || { kill -CONT "$AANF_PID"; m5s_fail "only $n sends during the stall"; }
kill -0 "$R3" 2>/dev/null ||
  { kill -CONT "$AANF_PID"; m5s_fail "ue3's register ended while the AAnF was stopped: $(cat reg3.out reg3.out.err)"; }
left=$((2000 - ($(now_ms) - T0)))
((left <= 0)) || sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
kill -CONT "$AANF_PID"
wait_pid_rc "$R3" 20
[[ $WAIT_RC == 0 ]] || m5s_fail "ue3's register after SIGCONT exited $WAIT_RC: $(cat reg3.out reg3.out.err)"
check_reg reg3.out ue3
echo "ue3 registered $(($(now_ms) - T0)) ms after SIGSTOP"

# ---- the AAnF down ---------------------------------------------------------------------------
kill -KILL "$AANF_PID"
wait "$AANF_PID" 2>/dev/null || true
for tr in tls dtls; do
  t0=$(now_ms)
  rc=0
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue4.yaml" --server "$(m5c_uri "$tr")" register \
    --timeout 5 >"reg4-$tr.out" 2>&1 || rc=$?
  ms=$(($(now_ms) - t0))
  [[ $rc == 3 ]] || m5s_fail "ue4 register ($tr) with the AAnF down exited $rc, want 3: $(cat "reg4-$tr.out")"
  ((ms < 8000)) || m5s_fail "ue4 register ($tr) with the AAnF down took $ms ms (timeout 5 s)"
  echo "ue4 register ($tr) with the AAnF down: exit 3 after $ms ms"
done
for n in 0 1 2; do
  send_msg ue1 tls ue2 "down-$n" "AAnF down: $n" "down-$n.out"
  wait_recv listen-long.out "down-$n"
  check_recv listen-long.out "down-$n" ue1 ue2 "AAnF down: $n"
done
kill -TERM "$LL" 2>/dev/null || true
wait_pid_rc "$LL" 10

# ---- restart: the AAnF (same database) and m5s (same database, new ports) --------------------
start_aanf
stop_m5s
mapfile -t OPTS < <(m5s_opts)
start_m5s "${OPTS[@]}"
for ue in ue1 ue2 ue3; do
  st=$(admin_curl -s --max-time 5 -o "binding-$ue.json" -w '%{http_code}' "$M5S_ADMIN/admin/v1/bindings/$ue")
  [[ $st == 200 ]] || m5s_fail "GET bindings/$ue after restart: HTTP $st $(cat "binding-$ue.json")"
  [[ $(json_get "binding-$ue.json" registered) == true ]] ||
    m5s_fail "$ue not registered after the restart: $(cat "binding-$ue.json")"
done
st=$(admin_curl -s --max-time 5 -o binding-ue4.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/bindings/ue4")
[[ $st == 200 && $(json_get binding-ue4.json registered) == false ]] ||
  m5s_fail "ue4 (never registered) after restart: HTTP $st $(cat binding-ue4.json)"
m5c_listen_bg ue2 dtls listen-restart.out 1 30
L2=$M5C_LISTEN_PID
grep -E '[: ]ue2: registered' "$M5S_LOG" | tail -n 1 | grep -q 'registered (again' ||
  m5s_fail "ue2's REG after the restart was not a re-registration (2.04)"
send_msg ue1 tls ue2 after-restart "after the restart" send-restart.out
wait_listener_done "$L2" listen-restart.out
check_recv listen-restart.out after-restart ue1 ue2 "after the restart"

stop_m5s
stop_aanf
echo "m5s p2p: ok"
