#!/usr/bin/env bash
# Integration: the message store failing under a running m5s, and pushes a UE must not get
# (docs/delivery.md, docs/store.md). Faults are injected from outside: SQLite triggers put into
# the store file with sqlite3 while m5s is stopped (m5s holds the file exclusively while it runs).
#  - pushes queued for a UE are dropped on its DEREG: ue2 (raw MSGin5G-1 over TLS, coap_raw.py,
#    coap.window 1) registers with 5 stored messages waiting, holds the first push unanswered
#    (the other 4 wait behind the window), deregisters, then answers the held push: nothing more
#    may be pushed to it. m5c listen as ue2 later gets the 4 others, each once;
#  - a failed store commit is never acknowledged: a trigger refuses to store messages whose msgId
#    starts with "fail-"; ue1's MSG gets 5.03 (not a 2.04 MSGRESP), as1's deliver-as-message gets
#    500, and neither reaches ue2, which is listening;
#  - nothing stays stuck: a trigger makes the delivered-conclusion of a delivery pushed right
#    after its accept fail (DELETE of an in-flight row); without a restart, after
#    store.in_flight_max_s (2 s here) the delivery is queued again, pushed again and recorded
#    as delivered (/metrics: delivered 1, queued 0).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
RAW="$M5_SRC/tests/interop/coap_raw.py"
SUPI1=001010000000911
KAUSF1=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f11
SUPI2=001010000000912
KAUSF2=2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f12

make_pki
start_aanf
start_m5s "store: {in_flight_max_s: 2}" "coap: {window: 1}" "workers: 1"
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
AKID2=$(akma_derive "$SUPI2" "$KAUSF2" tls13 | kv_field akid)
KAF2=$(akma_derive "$SUPI2" "$KAUSF2" tls13 | kv_field kaf)
[[ -n $AKID1 && -n $KAF1 && -n $AKID2 && -n $KAF2 ]] || fail "m5ctl akma derive gave nothing"
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
STORE=$M5_TMP/m5s/store.db
admin_curl -sf -o /dev/null -X PUT -H 'content-type: application/json' -d '{"targets":["127.0.0.1:9"]}' \
  "$M5S_ADMIN/admin/v1/as-clients/as1"

metric() { # NAME: its value on /metrics
  curl -s "$M5S_ADMIN/metrics" | awk -v n="$1" '$1 == n {print $2}'
}
ids_of() { # OUT: the msgIds of the JSON lines (or RECV/HELD lines) printed by a client
  $PY -c 'import json,sys
for l in open(sys.argv[1]):
    l = l.strip()
    for p in ("RECV ", "HELD "):
        if l.startswith(p): l = l[len(p):]
    if l.startswith("{"):
        print(json.loads(l).get("msgId"))' "$1"
}
ue_send() { # UE DEST ID [m5c send options]: the MSGRESP in send.out
  local ue=$1 to=$2 id=$3
  shift 3
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" send \
    --to "ue:$to" --msg-id "$id" --payload "hi $id" "$@" >send.out 2>&1 || true
  grep -q '"msgType":"MSGRESP"' send.out || m5s_fail "m5c send $id: no MSGRESP: $(cat send.out)"
}

# ---- pushes queued for a UE are dropped on its DEREG ----------------------------------------------
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" register \
  >reg.out 2>&1 || m5s_fail "ue2 register: $(cat reg.out)"
for n in 1 2 3 4 5; do
  ue_send ue1 ue2 "d-$n" --store-forward
  grep -q '"status":"DELY_STORED"' send.out || m5s_fail "d-$n: $(cat send.out)"
done
"$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$KAF2" --akid "$AKID2" --timeout 10 -- \
  reg:ue2 'expect:2.01|2.04' hold dereg:ue2 'expect:2.02|2.04' answer-held quiet:3 \
  >dereg.out 2>dereg.err || m5s_fail "ue2 got a push after its DEREG: $(cat dereg.out dereg.err)"
[[ $(ids_of dereg.out | wc -l) == 1 ]] || m5s_fail "held: $(cat dereg.out)"
set +e
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" listen \
  --count 5 --timeout 4 >listen.out 2>listen.err
rc=$?
set -e
[[ $rc == 4 ]] || m5s_fail "ue2 listen --count 5: exit $rc: $(cat listen.err)"
got=$({ ids_of dereg.out; ids_of listen.out; } | sort | tr '\n' ' ')
[[ $got == "d-1 d-2 d-3 d-4 d-5 " ]] || m5s_fail "ue2 got, in all: $got"
echo "ok: pushes queued for a UE are not sent after its DEREG, and are delivered later"

# ---- faults from triggers --------------------------------------------------------------------------
stop_m5s
sqlite3 "$STORE" "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.msg_id LIKE 'fail-%'
  BEGIN SELECT RAISE(ABORT, 'injected fault'); END;
  CREATE TRIGGER stuck BEFORE DELETE ON deliveries WHEN OLD.state = 4 AND
  (SELECT msg_id FROM messages WHERE id = OLD.msg) LIKE 'stuck-%'
  BEGIN SELECT RAISE(ABORT, 'injected fault'); END;" || fail "cannot install the triggers"
restart_m5s

"$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" listen --timeout 40 \
  >live.out 2>live.err &
LISTEN_PID=$!
track_pid "$LISTEN_PID"
wait_file_line "$M5S_LOG" "[: ]ue2: registered" 15 "$LISTEN_PID" ||
  m5s_fail "ue2's listener did not register: $(cat live.err)"

# a failed commit: 5.03 to the UE, 500 to the AS, nothing delivered
"$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$KAF1" --akid "$AKID1" --timeout 10 -- \
  reg:ue1 'expect:2.01|2.04' msg:ue1:ue2:fail-1:aGk= 'expect:5.03' >fail.out 2>fail.err ||
  m5s_fail "ue1's MSG on a failing store: $(cat fail.out fail.err)"
TOKEN=$(curl -s --http2 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" --key "$PKI/as1.key" \
  -d grant_type=client_credentials "$NB/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
st=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" --key "$PKI/as1.key" \
  -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -o as.out -w '%{http_code}' \
  -d '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue2"},"msgId":"fail-as","payload":"aGk=","stoAndFwInd":true}' \
  "$NB/msgs-msgdelivery/v1/deliver-as-message")
[[ $st == 500 ]] || m5s_fail "as1's message on a failing store: want 500, got $st $(cat as.out)"
validate TS29571_CommonData.yaml ProblemDetails as.out
echo "ok: a failed store commit is answered 5.03 (UE) and 500 (AS)"

# a conclusion that fails: the delivery is queued again and delivered, without a restart
ue_send ue1 ue2 stuck-1
! grep -q '"status"' send.out || m5s_fail "stuck-1: want accepted for delivery: $(cat send.out)"
for ((i = 0; i < 200; i++)); do
  [[ $(metric msgin5g_messages_delivered_total) == 1 && $(metric msgin5g_messages_queued) == 0 ]] && break
  sleep 0.1
done
[[ $(metric msgin5g_messages_delivered_total) == 1 && $(metric msgin5g_messages_queued) == 0 ]] ||
  m5s_fail "stuck-1 stayed in flight: delivered $(metric msgin5g_messages_delivered_total), queued $(metric msgin5g_messages_queued)"
grep -q 'could not record its outcome' "$M5S_LOG" || m5s_fail "the injected fault did not happen"
grep -q 'deliveries in flight were never concluded: queued again' "$M5S_LOG" ||
  m5s_fail "no re-queue logged"
[[ $(metric msgin5g_deliveries_requeued_total) == 1 ]] ||
  m5s_fail "requeued: $(metric msgin5g_deliveries_requeued_total), want 1"
kill -TERM "$LISTEN_PID"
wait_pid_rc "$LISTEN_PID" 15
[[ $(ids_of live.out | tr '\n' ' ') == "stuck-1 " ]] || m5s_fail "ue2 got: $(cat live.out)"
echo "ok: a delivery whose conclusion failed is pushed again and recorded, without a restart"
stop_m5s
