#!/usr/bin/env bash
# Integration: a delivery queued for a session before its UE Service ID was re-bound is not
# pushed to that session afterwards, even when the CLOSE to its worker was lost and the
# store has not run the REBIND yet (docs/delivery.md "Re-bound UE Service IDs"). A raw client
# (coap_raw.py) registers as ue1 and holds the push of m-1 (store-and-forward) unanswered; ue1
# is re-bound to another SUPI while a test hook (M5_TEST_HOOKS, test builds only) drops the CLOSE and a
# trigger in the store refuses the REBIND (while a message "rebind-block" is stored, as a
# failing disk would). The held push is then answered 5.03, so m-1 goes back to the queue,
# still of the old generation; when the back-off timer hands it out again, m5s checks the
# binding's current generation, does not push it, and closes the stale session: the raw
# client sees no second push.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
SUPI1=001010000000831
KAUSF1=5151515151515151515151515151515151515151515151515151515151515151
SUPI1B=001010000000839
SUPI2=001010000000832
KAUSF2=6161616161616161616161616161616161616161616161616161616161616161
SUPI3=001010000000833
KAUSF3=7171717171717171717171717171717171717171717171717171717171717171
RAW="$M5_SRC/tests/interop/coap_raw.py"

make_pki
start_aanf
use_test_hooks
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
setup_ue ue3 "$SUPI3" "$KAUSF3"
block_rebind_while_stored

AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
timeout 90 "$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$KAF1" --akid "$AKID1" --timeout 20 \
  -- reg:ue1 'expect:2.01|2.04' "touch:$M5_TMP/reg" hold "touch:$M5_TMP/held" \
  "waitfile:$M5_TMP/go" answer-held:5.03 quiet:10 >raw.out 2>&1 &
RAW_PID=$!
track_pid "$RAW_PID"
for f in reg held; do
  if [[ $f == held ]]; then
    timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" send \
      --to ue:ue1 --msg-id m-1 --payload m-1 --store-forward >send.out 2>&1 ||
      m5s_fail "ue2 -> ue1: $(cat send.out)"
  fi
  for ((i = 0; i < 200; i++)); do
    [[ -e $M5_TMP/$f ]] && break
    kill -0 "$RAW_PID" 2>/dev/null || m5s_fail "coap_raw exited early: $(cat raw.out)"
    sleep 0.1
  done
  [[ -e $M5_TMP/$f ]] || m5s_fail "coap_raw did not reach $f: $(cat raw.out)"
done
grep -q '^HELD .*"payload":"bS0x"' raw.out || m5s_fail "the held push is not m-1: $(cat raw.out)"

timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" send \
  --to ue:ue3 --msg-id rebind-block --payload block --store-forward >block.out 2>&1 ||
  m5s_fail "rebind-block: $(cat block.out)"
touch "$HOOKS/drop-close"
st=$(admin_curl -s --max-time 10 -X PUT -H 'content-type: application/json' \
  --data-binary "{\"supi\":\"$SUPI1B\"}" -o put.out -w '%{http_code}' \
  "$M5S_ADMIN/admin/v1/bindings/ue1")
[[ $st == 200 ]] || m5s_fail "re-binding ue1: HTTP $st $(cat put.out)"
[[ -e $HOOKS/drop-close.reached ]] || m5s_fail "the CLOSE was not dropped (hook not reached)"
! grep -q failedDeliveries put.out || m5s_fail "the store's REBIND was not refused: $(cat put.out)"
echo "ok: ue1 re-bound, its CLOSE lost and the store's REBIND refused"
touch "$M5_TMP/go"
wait_pid_rc "$RAW_PID" 60
wait_file_line "$M5S_LOG" 'MSG m-1 to ue1: the binding changed since session [0-9]+ registered; not pushed' 15 ||
  m5s_fail "m-1 was not handed out again, or not refused: $(cat raw.out)"
! grep -q 'pushed during quiet' raw.out || m5s_fail "m-1 was pushed again to the stale session: $(cat raw.out)"
grep -Eq 'ue1: session closed|session [0-9]+ closed' "$M5S_LOG" || m5s_fail "the stale session was not closed"
echo "ok: the queued delivery is not pushed to the stale session, which is closed"
stop_m5s
stop_aanf
