#!/usr/bin/env bash
# Integration: revocation holds when the message between threads is lost (docs/delivery.md
# "Re-bound UE Service IDs"; issue 9 point 4). Un-binding or re-binding a UE Service ID posts
# a CLOSE to the worker holding its session; here a test hook (M5_TEST_HOOKS, test builds
# only) drops that CLOSE as a full mailbox would, so the old session stays open. A raw client
# (coap_raw.py over openssl s_client, which does not reconnect) then goes on using it:
#  - un-bind: the session's next MSG gets 4.03 (the binding changed), the session is closed,
#    nothing is stored;
#  - re-bind to another SUPI: a message sent to the UE Service ID for the new subscriber is
#    not pushed to the old session, whose next MSG gets 4.03 too.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
SUPI1=001010000000801
KAUSF1=2121212121212121212121212121212121212121212121212121212121212121
SUPI1B=001010000000811
KAUSF1B=3131313131313131313131313131313131313131313131313131313131313131
SUPI2=001010000000802
KAUSF2=4141414141414141414141414141414141414141414141414141414141414141
RAW="$M5_SRC/tests/interop/coap_raw.py"

make_pki
start_aanf
use_test_hooks
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri dtls)" register \
  >reg2.out 2>&1 || m5s_fail "ue2 register: $(cat reg2.out)"
AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)

# raw_bg OUT STEPS...: coap_raw.py as ue1's first subscriber, in the background (RAW_PID).
raw_bg() {
  local out=$1
  shift
  timeout 90 "$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$KAF1" --akid "$AKID1" --timeout 20 \
    -- "$@" >"$out" 2>&1 &
  RAW_PID=$!
  track_pid "$RAW_PID"
}
wait_file() { # FILE: within 20 s, else fail
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -e $1 ]] && return 0
    kill -0 "$RAW_PID" 2>/dev/null || m5s_fail "coap_raw exited early: $(cat "$RAW_OUT")"
    sleep 0.1
  done
  m5s_fail "coap_raw did not reach $1: $(cat "$RAW_OUT")"
}
queued() {
  curl -s --max-time 10 "$M5S_ADMIN/admin/v1/stats" >stats.json
  json_get stats.json messagesQueued
}

# ---- un-bind, the CLOSE lost ---------------------------------------------------------------
touch "$HOOKS/drop-close"
RAW_OUT=raw1.out
raw_bg raw1.out reg:ue1 'expect:2.01|2.04' "touch:$M5_TMP/reg1" "waitfile:$M5_TMP/go1" \
  "msg:ue1:ue2:rv-1:aGk=" "expect:4.03:diag~binding"
wait_file "$M5_TMP/reg1"
st=$(admin_curl -s --max-time 10 -X DELETE -o del.json -w '%{http_code}' \
  "$M5S_ADMIN/admin/v1/bindings/ue1")
[[ $st == 200 ]] || m5s_fail "DELETE ue1: $st $(cat del.json)"
[[ -e $HOOKS/drop-close.reached ]] || m5s_fail "the CLOSE was not dropped (hook not reached)"
grep -q 'ue1: binding changed, but its live session could not be closed' "$M5S_LOG" ||
  m5s_fail "m5s did not log the lost CLOSE"
touch "$M5_TMP/go1"
wait_pid_rc "$RAW_PID" 60
[[ $WAIT_RC == 0 ]] || m5s_fail "the stale session's MSG was not refused with 4.03: $(cat raw1.out)"
grep -q 'ue1: session [0-9]* is stale' "$M5S_LOG" || m5s_fail "the stale session was not closed"
[[ $(queued) == 0 ]] || m5s_fail "the stale session's MSG was stored: $(cat stats.json)"
echo "ok: un-bind with the CLOSE lost: the old session's MSG gets 4.03 and it is closed"

# ---- re-bind, the CLOSE lost ---------------------------------------------------------------
provision_ue ue1 "$SUPI1" "$KAUSF1"
RAW_OUT=raw2.out
raw_bg raw2.out reg:ue1 'expect:2.01|2.04' "touch:$M5_TMP/reg2" "waitfile:$M5_TMP/go2" \
  quiet:3 "msg:ue1:ue2:rv-2:aGk=" "expect:4.03:diag~binding"
wait_file "$M5_TMP/reg2"
"$M5_BIN/m5ctl" subscriber add --supi "$SUPI1B" --kausf "$KAUSF1B" --ue-svc-id ue1 \
  --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" --pki "$M5_TMP/pki" >rebind.out 2>&1 ||
  m5s_fail "re-binding ue1: $(cat rebind.out)"
[[ $(grep -c 'ue1: binding changed, but its live session could not be closed' "$M5S_LOG") == 2 ]] ||
  m5s_fail "the second CLOSE was not dropped"
# For the new subscriber of ue1 (offline): must not be pushed to the old session.
m5c_send ue2 dtls ue1 "for the new ue1" send.out || m5s_fail "ue2 -> ue1: $(cat send.out)"
touch "$M5_TMP/go2"
wait_pid_rc "$RAW_PID" 60
[[ $WAIT_RC == 0 ]] || m5s_fail "the old session got a push or its MSG was accepted: $(cat raw2.out)"
! grep -q '^< pushed' raw2.out || m5s_fail "the old session got the new subscriber's message"
echo "ok: re-bind with the CLOSE lost: nothing for the new subscriber reaches the old session," \
  "whose MSG gets 4.03"
stop_m5s
stop_aanf
echo "PASS"
