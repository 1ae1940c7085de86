#!/usr/bin/env bash
# Integration: m5s crashes and restarts (docs/delivery.md, "What you can rely on"):
#  - kill -9 under a steady stream: ue1 (raw MSGin5G-1 over TLS 1.3, coap_raw.py, one session)
#    sends store-and-forward MSGs to ue2 back to back while ue2 listens (m5c listen over TLS,
#    which re-opens its session with back-off); after 150 acks m5s is killed with SIGKILL and
#    started again on the same ports and store. Every msgId acked to ue1 (2.04 MSGRESP, not
#    DELY_FAILED) reaches ue2's application exactly once; an unacked one at most once;
#  - report across a restart: ue3 sends with --store-forward --report to ue4, registered but
#    offline -> DELY_STORED; m5s killed (-9) and restarted; ue4 comes back and gets the message
#    once; its IMDN is stored for ue3 (offline); m5s stopped (SIGTERM) and started again; ue3
#    comes back and gets the REPT_DELY_SUCCESS report once.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3

SUPI1=001010000000501
KAUSF1=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
SUPI2=001010000000502
KAUSF2=2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40
SUPI3=001010000000503
KAUSF3=4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60
SUPI4=001010000000504
KAUSF4=6162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80
ACKS_BEFORE_KILL=150
STREAM=1500 # messages the sender would send if m5s stayed up

make_pki
start_aanf
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
setup_ue ue3 "$SUPI3" "$KAUSF3"
setup_ue ue4 "$SUPI4" "$KAUSF4"
AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
[[ -n $AKID1 && -n $KAF1 ]] || fail "m5ctl akma derive gave nothing"

# kill9_m5s: SIGKILL, reaped.
kill9_m5s() {
  kill -KILL "$M5S_PID"
  wait "$M5S_PID" 2>/dev/null || true
}

# acked_of OUT: the msgIds coap_raw got a 2.04 MSGRESP for (no status or DELY_STORED).
acked_of() {
  $PY -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("< 2.04 ") and "{" in l:
        o = json.loads(l[l.index("{"):])
        if o.get("msgType") == "MSGRESP" and o.get("status") in (None, "DELY_STORED"):
            print(o["msgId"])' "$1"
}

# ---- kill -9 under a steady stream ---------------------------------------------------------------
"$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" listen --timeout 50 \
  >stream-listen.out 2>stream-listen.err &
LISTEN_PID=$!
track_pid "$LISTEN_PID"
wait_file_line "$M5S_LOG" "[: ]ue2: registered" 15 "$LISTEN_PID" ||
  m5s_fail "ue2's listener did not register: $(cat stream-listen.err)"

steps=(reg:ue1 'expect:2.01|2.04')
for ((n = 1; n <= STREAM; n++)); do
  steps+=("json:{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue2\"},\"msgId\":\"s-$n\",\"payload\":\"c3RyZWFt\",\"stoAndFwInd\":true}"
    expect:2.04)
done
"$PY" "$M5_SRC/tests/interop/coap_raw.py" --tls --port "$M5S_PORT" --kaf "$KAF1" \
  --akid "$AKID1" --timeout 10 -- "${steps[@]}" >stream-send.out 2>stream-send.err &
SEND_PID=$!
track_pid "$SEND_PID"
for ((i = 0; i < 300; i++)); do
  (($(grep -c '^OK msg\|^OK json' stream-send.out || true) >= ACKS_BEFORE_KILL)) && break
  kill -0 "$SEND_PID" 2>/dev/null || m5s_fail "the sender stopped early: $(tail -n 5 stream-send.out stream-send.err)"
  sleep 0.1
done
kill9_m5s
wait_pid_rc "$SEND_PID" 15 # it fails now: its session is gone
[[ $WAIT_RC != 0 ]] || m5s_fail "the sender finished all $STREAM messages before the kill"
acked_of stream-send.out >acked.txt
n_acked=$(wc -l <acked.txt)
((n_acked >= ACKS_BEFORE_KILL)) || m5s_fail "only $n_acked acks before the kill"
echo "killed m5s after $n_acked acks"

restart_m5s
# ue2's listener re-registers by itself; wait (bounded) until every acked msgId arrived.
ok=0
for ((i = 0; i < 300; i++)); do
  if listen_ids stream-listen.out | sort -u | comm -23 <(sort -u acked.txt) - | grep -q .; then
    kill -0 "$LISTEN_PID" 2>/dev/null || break
    sleep 0.1
  else
    ok=1
    break
  fi
done
((ok)) || m5s_fail "acked messages missing at ue2: $(listen_ids stream-listen.out | sort -u |
  comm -23 <(sort -u acked.txt) - | head -n 10 | tr '\n' ' ') ($(tail -n 3 stream-listen.err))"
sleep 2 # a repeated push would be handed over by now
kill -TERM "$LISTEN_PID"
wait_pid_rc "$LISTEN_PID" 15
[[ $WAIT_RC == 0 ]] || m5s_fail "ue2's listener exited $WAIT_RC: $(tail -n 5 stream-listen.err)"
dups=$(listen_ids stream-listen.out | sort | uniq -d | head -n 10 | tr '\n' ' ')
[[ -z $dups ]] || m5s_fail "handed to ue2's application more than once: $dups"
grep -q '"payloadText":"stream"' stream-listen.out || m5s_fail "payload lost: $(head -n 2 stream-listen.out)"
n_got=$(listen_ids stream-listen.out | wc -l)
((n_got <= n_acked + 1)) || m5s_fail "ue2 got $n_got messages, $n_acked were acked (at most one unacked in flight)"
echo "ok: kill -9 under a stream: $n_acked acked, each received once ($n_got received)"

# ---- a delivery report across restarts -----------------------------------------------------------
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue4.yaml" --server "$(m5c_uri tls)" register \
  >reg4.out 2>&1 || m5s_fail "ue4 register: $(cat reg4.out)"
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue3.yaml" --server "$(m5c_uri tls)" send \
  --to ue:ue4 --msg-id r-1 --payload report-me --store-forward --report >send3.out 2>&1 ||
  m5s_fail "ue3 send: $(cat send3.out)"
grep -q '"status":"DELY_STORED"' send3.out || m5s_fail "ue3 send: want DELY_STORED: $(cat send3.out)"

kill9_m5s
restart_m5s

set +e
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue4.yaml" --server "$(m5c_uri tls)" listen \
  --count 2 --timeout 4 >listen4.out 2>listen4.err
rc=$?
set -e
[[ $rc == 4 ]] || m5s_fail "ue4 listen --count 2: exit $rc: $(cat listen4.err)"
[[ $(listen_ids listen4.out | tr '\n' ' ') == "r-1 " ]] ||
  m5s_fail "ue4 after the kill: want r-1 once: $(cat listen4.out)"
grep -q '"payloadText":"report-me"' listen4.out || m5s_fail "r-1's payload: $(cat listen4.out)"

stop_m5s
restart_m5s

set +e
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue3.yaml" --server "$(m5c_uri tls)" listen \
  --count 2 --timeout 4 >listen3.out 2>listen3.err
rc=$?
set -e
[[ $rc == 4 ]] || m5s_fail "ue3 listen --count 2: exit $rc: $(cat listen3.err)"
$PY - listen3.out <<'EOF' || m5s_fail "ue3's report after the restarts: $(cat listen3.out)"
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert len(objs) == 1, objs
o = objs[0]
assert o.get("msgType") == "IMDN" and o.get("msgId") == "r-1", o
assert o.get("delivSt") == "REPT_DELY_SUCCESS", o
assert o.get("oriAddr", {}).get("addr") == "ue4" and o.get("destAddr", {}).get("addr") == "ue3", o
EOF
echo "ok: report across a restart: stored -> kill -9 -> delivered -> restart -> report reaches the sender"

stop_m5s
