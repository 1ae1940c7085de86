#!/usr/bin/env bash
# Integration: reliable delivery through m5s's message store (docs/delivery.md), with m5s at
# store.max_per_recipient 3 and two workers. ue1 speaks raw MSGin5G-1 (coap_raw.py over
# openssl s_client, TLS 1.3) so it can set stoAndFwInd, priority, exprTime and delivStReqInd;
# the recipients listen with m5c over DTLS:
#  - store-and-forward: ue2 registered but offline -> DELY_STORED; without stoAndFwInd ->
#    DELY_FAILED RECIPIENT_UNREACHABLE; ue2 comes back (m5c listen) -> the stored messages
#    arrive, HIGH first, then arrival order, each once;
#  - duplicate msgId: the repeat gets the original ack and is not delivered again (also for a
#    DELY_FAILED ack);
#  - expiry: a stored MSG with exprTime now+2 s and delivStReqInd expires; ue1 gets an IMDN
#    REPT_DELY_FAILED / EXPIRED from ue2; ue2 never gets the MSG;
#  - queue cap: the 4th stored message for ue3 -> DELY_FAILED QUEUE_FULL (again on a retry);
#  - durability across a restart: m5s is stopped and started again; ue3 then gets its 3
#    stored messages, each once;
#  - store full (store.max_total 2): the 3rd stored message -> 5.03 with Max-Age 30, counted
#    in /metrics, not remembered (accepted once there is room again);
#  - delivery reports: ue2's IMDN to ue1 (offline) on ue1's rp-1, which asked for one ->
#    DELY_STORED, its repeat the same ack;
#    ue1 registers and gets the IMDN once; an IMDN whose oriAddr is not the session's: 4.03;
#  - a corrupt store file at start-up: exit 1 with an error naming store.path and the file
#    (SQLite only: skipped with M5_STORE_BACKEND=jetstream, the run as js/test_m5s_delivery).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3

SUPI1=001010000000401
KAUSF1=a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
SUPI2=001010000000402
KAUSF2=c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0
SUPI3=001010000000403
KAUSF3=e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00

# coap_raw.py, taught to accept pushed IMDN bodies too (its recv step wants a MSG).
RAW="$M5_TMP/coap_raw_imdn.py"
sed 's/obj.get("msgType") != "MSG"/obj.get("msgType") not in ("MSG", "IMDN")/' \
  "$M5_SRC/tests/interop/coap_raw.py" >"$RAW"
grep -q '"IMDN")' "$RAW" || fail "cannot adapt coap_raw.py to IMDN"

make_pki
start_aanf
start_m5s "store: {max_per_recipient: 3, max_per_recipient_per_originator: 3}"
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
setup_ue ue3 "$SUPI3" "$KAUSF3"
AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
AKID2=$(akma_derive "$SUPI2" "$KAUSF2" tls13 | kv_field akid)
KAF2=$(akma_derive "$SUPI2" "$KAUSF2" tls13 | kv_field kaf)
[[ -n $AKID1 && -n $KAF1 && -n $AKID2 && -n $KAF2 ]] || fail "m5ctl akma derive gave nothing"

# raw UE OUT STEPS...: coap_raw.py as UE (ue1 or ue2) over TLS 1.3; must succeed.
raw() {
  local ue=$1 out=$2 akid kaf
  shift 2
  if [[ $ue == ue1 ]]; then akid=$AKID1 kaf=$KAF1; else akid=$AKID2 kaf=$KAF2; fi
  timeout 60 "$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$kaf" --akid "$akid" --timeout 10 \
    -- "$@" >"$out" 2>&1 || m5s_fail "coap_raw ($ue) failed:$(printf '\n')$(cat "$out")"
}

# msg ID DEST [EXTRA [TEXT]]: a MSG body from ue1 (EXTRA: more JSON members, starting with a
# comma; TEXT: the payload, default "text of ID").
msg() {
  printf '{"msgType":"MSG","oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"UE","addr":"%s"},"msgId":"%s","payload":"%s"%s}' \
    "$2" "$1" "$(printf '%s' "${4:-text of $1}" | base64)" "${3:-}"
}
SF=',"stoAndFwInd":true'

# listen UE COUNT SECONDS OUT: m5c listen until COUNT messages or SECONDS; its exit status in
# LISTEN_RC (0: COUNT arrived, 4: timeout first).
listen() {
  set +e
  timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/$1.yaml" --server "$(m5c_uri dtls)" listen \
    --count "$2" --timeout "$3" >"$4" 2>"$4.err"
  LISTEN_RC=$?
  set -e
}

# ---- store-and-forward, priority order, duplicates --------------------------------------------
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri dtls)" register \
  >reg2.out 2>&1 || m5s_fail "ue2 register: $(cat reg2.out)"
raw ue1 sf.out reg:ue1 expect:2.01 \
  "json:$(msg sf-nosf ue2)" "expect:2.04:status=DELY_FAILED:failureCause=RECIPIENT_UNREACHABLE" \
  "json:$(msg sf-1 ue2 "$SF")" "expect:2.04:msgId=sf-1:status=DELY_STORED" \
  "json:$(msg sf-2 ue2 "$SF,\"priority\":\"LOW\"")" "expect:2.04:msgId=sf-2:status=DELY_STORED" \
  "json:$(msg sf-1 ue2 "$SF" other)" "expect:2.04:msgId=sf-1:status=DELY_STORED" \
  "json:$(msg sf-hi ue2 "$SF,\"priority\":\"HIGH\"")" "expect:2.04:msgId=sf-hi:status=DELY_STORED" \
  "json:$(msg sf-nosf ue2)" "expect:2.04:status=DELY_FAILED:failureCause=RECIPIENT_UNREACHABLE" \
  "json:$(msg unk-1 nobody "$SF")" "expect:2.04:status=DELY_FAILED:failureCause=UNKNOWN_RECIPIENT"
listen ue2 4 6 sf-listen.out
[[ $LISTEN_RC == 4 ]] || m5s_fail "ue2 listen --count 4: exit $LISTEN_RC: $(cat sf-listen.out.err)"
got=$(listen_ids sf-listen.out | tr '\n' ' ')
[[ $got == "sf-hi sf-1 sf-2 " ]] ||
  m5s_fail "stored messages for ue2: got '$got', want 'sf-hi sf-1 sf-2 ' (HIGH first, each once)"
grep -q 'dGV4dCBvZiBzZi0x' sf-listen.out || m5s_fail "sf-1 arrived with the repeat's payload"
echo "ok: store-and-forward, order, duplicates"

# ---- expiry with a failure report ----------------------------------------------------------------
EXP=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%SZ)
raw ue1 exp.out reg:ue1 expect:2.01\|2.04 \
  "json:$(msg exp-1 ue2 "$SF,\"delivStReqInd\":true,\"stoAndFwParams\":{\"exprTime\":\"$EXP\"}")" \
  "expect:2.04:msgId=exp-1:status=DELY_STORED" \
  "recv:msgid=exp-1:from=ue2:to=ue1:msgType=IMDN:delivSt=REPT_DELY_FAILED:failureCause=EXPIRED" \
  sleep:1 # the answer reaches m5s before the session closes (else the report comes again)
listen ue2 1 3 exp-listen.out
[[ $LISTEN_RC == 4 && -z $(listen_ids exp-listen.out) ]] ||
  m5s_fail "the expired exp-1 reached ue2: $(cat exp-listen.out)"
echo "ok: expiry with a report"

# ---- queue cap ---------------------------------------------------------------------------------
raw ue1 cap.out reg:ue1 expect:2.01\|2.04 \
  "json:$(msg q-1 ue3 "$SF")" "expect:2.04:status=DELY_STORED" \
  "json:$(msg q-2 ue3 "$SF")" "expect:2.04:status=DELY_STORED" \
  "json:$(msg q-3 ue3 "$SF")" "expect:2.04:status=DELY_STORED" \
  "json:$(msg q-4 ue3 "$SF")" "expect:2.04:status=DELY_FAILED:failureCause=QUEUE_FULL" \
  "json:$(msg q-4 ue3 "$SF")" "expect:2.04:status=DELY_FAILED:failureCause=QUEUE_FULL"
echo "ok: queue cap"

# ---- a restart keeps what was accepted ---------------------------------------------------------
stop_m5s
start_m5s "store: {max_per_recipient: 3, max_per_recipient_per_originator: 3}"
listen ue3 4 6 cap-listen.out
got=$(listen_ids cap-listen.out | tr '\n' ' ')
[[ $got == "q-1 q-2 q-3 " ]] || m5s_fail "ue3 after the restart: got '$got', want 'q-1 q-2 q-3 '"
echo "ok: stored messages survive a restart"

# ---- a full store is overload: 5.03 with Max-Age, nothing kept -------------------------------
stop_m5s
start_m5s "store: {max_per_recipient: 3, max_per_recipient_per_originator: 3, max_total: 2}"
raw ue1 full.out reg:ue1 expect:2.01\|2.04 \
  "json:$(msg full-1 ue3 "$SF")" "expect:2.04:status=DELY_STORED" \
  "json:$(msg full-2 ue3 "$SF")" "expect:2.04:status=DELY_STORED" \
  "json:$(msg full-3 ue3 "$SF")" "expect:5.03:max-age=30:diag~overloaded" \
  "json:$(msg full-3 ue3 "$SF")" "expect:5.03:max-age=30"
curl -sf "http://127.0.0.1:$M5S_MGMT/metrics" >full-metrics.out || m5s_fail "GET /metrics failed"
grep -q '^msgin5g_messages_refused_total{reason="store_full"} 2$' full-metrics.out ||
  m5s_fail "/metrics does not count the 2 refusals: $(grep refused full-metrics.out)"
listen ue3 2 6 full-listen.out
got=$(listen_ids full-listen.out | tr '\n' ' ')
[[ $got == "full-1 full-2 " ]] || m5s_fail "ue3 with a full store: got '$got', want 'full-1 full-2 '"
# the refused message was not remembered: once there is room it is judged afresh
raw ue1 full2.out reg:ue1 expect:2.01\|2.04 \
  "json:$(msg full-3 ue3 "$SF")" "expect:2.04:status=DELY_STORED"
stop_m5s
start_m5s "store: {max_per_recipient: 3, max_per_recipient_per_originator: 3}"
listen ue3 1 6 full-listen2.out
[[ $(listen_ids full-listen2.out) == full-3 ]] || m5s_fail "full-3 did not reach ue3: $(cat full-listen2.out)"
echo "ok: a full store answers 5.03 with Max-Age and keeps nothing"

# ---- delivery reports from a UE ------------------------------------------------------------------
# ue1's rp-1 asks ue2 for a report (a report on a message that asked for none, or from another
# UE, is dropped: docs/delivery.md "Who may report on what"); ue1 is offline when it comes.
raw ue1 rp.out reg:ue1 expect:2.01\|2.04 \
  "json:$(msg rp-1 ue2 "$SF,\"delivStReqInd\":true")" "expect:2.04:msgId=rp-1:status=DELY_STORED"
IMDN='{"msgType":"IMDN","oriAddr":{"addrType":"UE","addr":"ue2"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"rp-1","delivSt":"REPT_DELY_SUCCESS"}'
raw ue2 imdn.out reg:ue2 expect:2.01\|2.04 \
  "json:$IMDN" "expect:2.04:msgId=rp-1:status=DELY_STORED" \
  "json:$IMDN" "expect:2.04:msgId=rp-1:status=DELY_STORED" \
  'json:{"msgType":"IMDN","oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"UE","addr":"ue2"},"msgId":"x","delivSt":"REPT_DELY_SUCCESS"}' \
  "expect:4.03"
raw ue1 imdn-recv.out reg:ue1 expect:2.01\|2.04 \
  "recv:msgid=rp-1:from=ue2:to=ue1:msgType=IMDN:delivSt=REPT_DELY_SUCCESS:failureCause=-" \
  quiet:3
[[ $(grep -c '^RECV ' imdn-recv.out) == 1 ]] || m5s_fail "ue1 got the report more than once"
echo "ok: delivery reports"

stop_m5s

# ---- a corrupt store is refused at start-up (the SQLite file) ------------------------------------
if sqlite_only "a corrupt store file"; then
  head -c 8192 /dev/urandom >bad-store.db
  write_m5s_config "$M5_TMP/bad.yaml" "store: {path: $M5_TMP/bad-store.db}"
  set +e
  timeout 20 "$M5_BIN/m5s" --config "$M5_TMP/bad.yaml" >bad.out 2>&1
  rc=$?
  set -e
  [[ $rc == 1 ]] || fail "m5s with a corrupt store exited $rc, want 1: $(cat bad.out)"
  grep -q 'm5s: store: .*bad-store.db' bad.out || fail "no clear store error: $(cat bad.out)"
  echo "ok: a corrupt store is refused"
fi

stop_aanf
echo "PASS"
