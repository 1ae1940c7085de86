#!/usr/bin/env bash
# The SMS gateway end to end when the SMSC misbehaves, through the real m5s, m5-aanf, m5gw of
# kind sms, m5c (ue1) and the npm `smpp` SMSC (e2e_sms_smsc.mjs); the adapter-level versions
# are sms_test_link.sh and sms_test_throttle.sh:
#  - the SMSC drops the connection with a UE's submit_sm unanswered: the gateway answers m5s
#    503, binds again, m5s (which kept the message: stoAndFwInd) delivers it again on the new
#    bind, and ue1 gets one delivery report;
#  - the SMSC stops answering with a UE's submit_sm out: after sms.response_timeout_ms the
#    gateway drops the link and answers m5s 503; delivered again on the next bind, one report;
#  - the SMSC throttles (ESME_RTHROTTLED twice): the gateway pauses and submits again itself,
#    the SMSC accepts it once, m5s pushed it once;
#  - throttled more than sms.throttle_retries times (ESME_RTHROTTLED, ESME_RMSGQFUL, ...): the
#    gateway hands it back to m5s (503), which delivers it on a later attempt, accepted once.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/e2e_sms_lib.bash"

GW_SMS_EXTRA=", throttle_retries: 2"
e2e_sms_setup
smsc receipts DELIVRD
texts() { # TEXT: the submit_sm of TEXT, as a JS expression
  echo "L.filter((s) => s.text === '$1')"
}
wait_texts() { # TEXT N: until N submit_sm of TEXT answered OK
  for ((i = 0; i < 300; i++)); do
    (($(grep -c "\"text\":\"$1\",\"status\":0," "$SUBMITS" || true) >= $2)) && return 0
    sleep 0.1
  done
  m5s_fail "no submit_sm of '$1' answered OK: $(tail -8 "$SMSC_OUT"; gw_tail)"
}

# ---- the SMSC drops the bind with a message on its way -------------------------------------------
smsc drop-at-submit
smsc_sync
ue_send send-1.out 'on its way' --report --store-forward
ID_DROP=$MSGID
smsc_wait '^CLOSE 1$' 20 "the SMSC closing the connection"
smsc_wait '^BIND 2 gw1$' 20 "the gateway binding again"
wait_texts 'on its way' 1
submits_check "$(texts 'on its way').length === 2 && $(texts 'on its way')[0].session === 1 &&
  $(texts 'on its way')[0].status === null && $(texts 'on its way')[1].session === 2 &&
  $(texts 'on its way')[1].status === 0" "the message again on the new bind"
grep -q "MSG $ID_DROP to sm1's gateway: not delivered (answered, HTTP 503), kept for a retry" "$M5S_LOG" ||
  m5s_fail "m5s was not answered 503 for the message in flight"
echo "ok: the bind dropped with a message on its way: delivered again on the new bind"

# ---- the SMSC stops answering with a message on its way -------------------------------------------
smsc hold on
smsc_sync
ue_send send-4.out 'anyone there' --report --store-forward
ID_SILENT=$MSGID
wait_file_line "$GW_LOG" 'link closed: submit_sm unanswered' 20 "$GW_PID" ||
  m5s_fail "the gateway did not give up on the silent SMSC: $(gw_tail)"
smsc hold off # its answer goes to the connection the gateway closed
smsc_wait '^BIND 3 gw1$' 20 "the gateway binding again"
wait_texts 'anyone there' 1
submits_check "$(texts 'anyone there').length === 2 && $(texts 'anyone there')[0].session === 2 &&
  $(texts 'anyone there')[0].status === null && $(texts 'anyone there')[1].session === 3" \
  "the message again on the new bind"
grep -q "MSG $ID_SILENT to sm1's gateway: not delivered (answered, HTTP 503), kept for a retry" "$M5S_LOG" ||
  m5s_fail "m5s was not answered 503 for the message left unanswered"
echo "ok: the SMSC stopped answering with a message on its way: delivered again on the new bind"

# ---- throttling ---------------------------------------------------------------------------------
smsc status 0x58 0x58
ue_send send-2.out 'slow down' --report --store-forward
ID_THR=$MSGID
wait_texts 'slow down' 1
submits_check "$(texts 'slow down').map((s) => s.status).join() === '88,88,0' &&
  $(texts 'slow down').every((s) => s.session === 3)" "throttled twice, then accepted"
[[ $(m5s_log_count "MSG $ID_THR delivered to sm1's gateway") == 1 &&
  $(m5s_log_count "MSG $ID_THR to sm1's gateway: not delivered") == 0 ]] ||
  m5s_fail "m5s pushed the throttled message more than once"
echo "ok: throttled: paused and submitted again by the gateway, accepted once"

# more throttling answers than sms.throttle_retries (2): handed back to m5s, which retries
smsc status 0x58 0x14 0x58
ue_send send-3.out 'back off' --report --store-forward
ID_THR3=$MSGID
wait_texts 'back off' 1
submits_check "$(texts 'back off').map((s) => s.status).join() === '88,20,88,0'" \
  "throttled 3 times, then accepted on m5s's next attempt"
grep -q "MSG $ID_THR3 to sm1's gateway: not delivered (answered, HTTP 503), kept for a retry" "$M5S_LOG" ||
  m5s_fail "the gateway did not hand the message back after sms.throttle_retries"
echo "ok: throttled beyond sms.throttle_retries: retried by m5s, accepted once"

# ---- ue1: one success report on each -----------------------------------------------------------
smsc_wait '^RECEIPT m6 0$' 10 "the receipts acknowledged"
# what m5s pushed to ue1 on any session (a push repeated because its acknowledgement was cut
# off by the end of an m5c send is the same line again: counted once)
cat send-*.out | grep '^{' | awk '!seen[$0]++' >ue1.json || true
got=$(grep -c '"msgType":"IMDN"' ue1.json || true)
if ((got < 4)); then
  m5c_listen_bg ue1 tls listen.out $((4 - got)) 20
  wait_pid_rc "$M5C_LISTEN_PID" 20
  [[ $WAIT_RC == 0 ]] || m5s_fail "ue1 did not get its 4 reports: $(cat listen.out)"
  cat send-*.out listen.out | grep '^{' | awk '!seen[$0]++' >ue1.json || true
fi
for id in "$ID_DROP" "$ID_SILENT" "$ID_THR" "$ID_THR3"; do
  jcheck ue1.json "L.filter((m) => m.msgType === 'IMDN' && m.msgId === '$id').length === 1 &&
    L.find((m) => m.msgType === 'IMDN' && m.msgId === '$id').delivSt === 'REPT_DELY_SUCCESS'" \
    "one success report on $id"
done
# nothing more went to the SMSC
submits_check "L.length === 2 + 2 + 3 + 4" "no other submit_sm"
echo "ok: ue1 got one delivery report on each"

wait_spool 0 10 || fail "the spool is not empty: $(cat "$M5_TMP/health.json")"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "PASS"
