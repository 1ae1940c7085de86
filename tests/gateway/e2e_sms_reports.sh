#!/usr/bin/env bash
# The SMS gateway end to end with an Application Server, and delivery reports both ways,
# through the real m5s, m5-aanf, m5gw of kind sms, m5c (ue1), the AS of tests/interop/
# as_server.mjs (as1: token and curl on the northbound API; every body m5s POSTs to it checked
# strictly against TS 29.538) and the npm `smpp` SMSC (e2e_sms_smsc.mjs):
#  - AS -> device (deliver-as-message, a report asked for): submit_sm from as1's route 1000
#    (TON unknown) with registered_delivery 1; the SMSC's receipt reaches as1 as a
#    DeliveryStatusReport from sm1 on its msgId;
#  - device -> AS: a deliver_sm to 1000 (sms.routes 1000=AS:as1) reaches as1 as a
#    UEMessageDelivery from sm1, answered ESME_ROK; one asking for an SME acknowledgement
#    (registered_delivery 0x04) carries delivStReqInd, and as1's failure report comes back to
#    the device as an ESME Delivery Acknowledgement (submit_sm esm_class 0x08, text
#    "id:<msgId> sub:001 dlvrd:000 stat:UNDELIV err:000 text:<failureCause>");
#  - device -> UE asking for an SME acknowledgement: ue1 (m5c) gets delivStReqInd, its report
#    reaches the SMSC as an ESME Delivery Acknowledgement from ue1's route 2000 with stat:DELIVRD;
#  - UE -> device, the SMSC failing it for good: a submit_sm_resp ESME_RX_P_APPN (the gateway
#    answers 400: REJECTED), ESME_RINVDSTADR (404: UNKNOWN_RECIPIENT), and a receipt
#    stat:UNDELIV err:012 (a report from sm1 with the SMSC's words): ue1 gets a failure report
#    on each, once.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/e2e_sms_lib.bash"

e2e_sms_setup
as_start
smsc receipts DELIVRD
AS_AUTH=(-H "authorization: Bearer $AS_TOKEN" -H 'content-type: application/json')
submit_count() { smsc_count '^SUBMIT '; }
wait_submits() { # N WHAT
  for ((i = 0; i < 200; i++)); do
    (($(submit_count) >= $1)) && return 0
    sleep 0.1
  done
  m5s_fail "$2: no submit_sm: $(tail -5 "$SMSC_OUT"; gw_tail)"
}
wait_as() { # OP COUNT WHAT
  for ((i = 0; i < 200; i++)); do
    (($(as_bodies "$1" | wc -l) >= $2)) && return 0
    sleep 0.1
  done
  m5s_fail "$3: nothing POSTed to the AS's $1: $(cat "$AS_LOG")"
}

# ---- AS -> device, with a report ---------------------------------------------------------------
as_call /msgs-msgdelivery/v1/deliver-as-message "${AS_AUTH[@]}" -d \
  "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"sm1\"},\"msgId\":\"as-1\",\"payload\":\"$(printf 'valve: close' | base64)\",\"stoAndFwInd\":true,\"delivStReqInd\":true}"
[[ $ST == 200 ]] || m5s_fail "deliver-as-message: $ST $(cat as.out)"
wait_submits 1 "AS -> device"
submits_check "L.length === 1 && L[0].source_addr === '1000' && L[0].source_addr_ton === 0 &&
  L[0].destination_addr === '$SM1' && L[0].dest_addr_ton === 1 && L[0].esm_class === 0 &&
  L[0].data_coding === 0 && L[0].registered_delivery === 1 && L[0].text === 'valve: close' &&
  L[0].status === 0" "AS -> device"
smsc_wait '^RECEIPT m1 0$' 10 "the receipt of as-1"
wait_as deliver-report 1 "the report on as-1"
as_bodies deliver-report >as-reports.json
jcheck as-reports.json "L.length === 1 && L[0].oriAddr.addrType === 'UE' && L[0].oriAddr.addr === 'sm1' &&
  L[0].destAddr.addrType === 'AS' && L[0].destAddr.addr === 'as1' && L[0].msgId === 'as-1' &&
  L[0].delivSt === 'REPT_DELY_SUCCESS'" "as1's report from sm1"
echo "ok: AS -> device, the SMSC's receipt back to the AS as a DeliveryStatusReport"

# ---- device -> AS ------------------------------------------------------------------------------
smsc mo a1 "$SM1" 1000 0 "$(hexof 'temp 21C')"
smsc_wait '^MORESP a1 0$' 20 "device -> AS answered"
smsc mo a2 "$SM1" 1000 0 "$(hexof 'alarm: valve stuck')" registered_delivery=0x04
smsc_wait '^MORESP a2 0$' 20 "device -> AS with an acknowledgement asked answered"
wait_as deliver-message 2 "device -> AS"
as_bodies deliver-message >as-msgs.json
jcheck as-msgs.json "L.length === 2 && L.every((m) => m.oriAddr.addrType === 'UE' && m.oriAddr.addr === 'sm1' &&
  m.destAddr.addrType === 'AS' && m.destAddr.addr === 'as1') &&
  L.some((m) => m.payload === b64('temp 21C') && !m.delivStReqInd) &&
  L.some((m) => m.payload === b64('alarm: valve stuck') && m.delivStReqInd === true)" "device -> AS"
A2=$(node -e 'for (const l of require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n"))
  if (JSON.parse(l).delivStReqInd) process.stdout.write(JSON.parse(l).msgId)' as-msgs.json)
# as1 reports a failure on it: the device gets an ESME Delivery Acknowledgement
as_call /msgs-msgdelivery/v1/deliver-report "${AS_AUTH[@]}" -d \
  "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"sm1\"},\"msgId\":\"$A2\",\"delivSt\":\"REPT_DELY_FAILED\",\"failureCause\":\"valve offline\"}"
[[ $ST == 200 ]] || m5s_fail "the AS's deliver-report: $ST $(cat as.out)"
wait_submits 2 "the AS's report to the device"
submits_check "L.length === 2 && L[1].esm_class === 0x08 && L[1].source_addr === '1000' &&
  L[1].destination_addr === '$SM1' && L[1].data_coding === 0 && L[1].registered_delivery === 0 &&
  L[1].text === 'id:$A2 sub:001 dlvrd:000 stat:UNDELIV err:000 text:valve offline'" \
  "the AS's report as an ESME Delivery Acknowledgement"
echo "ok: device -> AS; the AS's report to the device as an ESME Delivery Acknowledgement"

# ---- UE -> device, failed for good by the SMSC ---------------------------------------------------
# (an m5c send replaces the UE's session: what m5s pushes to ue1 meanwhile, such as the report
# on an earlier message, goes to that m5c, which prints it like m5c listen: ue1 got it)
smsc status 0x65
ue_send send-1.out 'no room' --report --store-forward
ID_P_APPN=$MSGID
wait_submits 3 "no room"
smsc status 0x0b
ue_send send-2.out 'nobody' --report --store-forward
ID_DSTADR=$MSGID
wait_submits 4 "nobody"
smsc receipts UNDELIV 012
ue_send send-3.out 'out of coverage' --report --store-forward
ID_UNDELIV=$MSGID
wait_submits 5 "out of coverage"
smsc_wait '^RECEIPT m3 0$' 10 "the UNDELIV receipt acknowledged"
submits_check "L[2].status === 0x65 && L[3].status === 0x0b && L[4].status === 0 &&
  L.slice(2).every((s) => s.registered_delivery === 1 && s.source_addr === '2000')" "the failed ones"
echo "ok: three messages the SMSC fails for good"

# ---- device -> a UE nobody is: m5s takes it but cannot deliver it (MessageDeliveryAck
# DELY_FAILED UNKNOWN_RECIPIENT), so the SMSC hears a permanent failure, not ESME_ROK
smsc mo f1 "$SM1" 3000 0 "$(hexof 'anyone there?')" registered_delivery=0x01
smsc_wait '^MORESP f1 101$' 20 "device -> unknown UE answered ESME_RX_P_APPN"
grep -q 'device message .* refused (DELY_FAILED: UNKNOWN_RECIPIENT)' "$GW_LOG" ||
  fail "the gateway did not log why: $(grep 'device message' "$GW_LOG" | tail -3)"
echo "ok: device -> unknown UE: deliver_sm_resp ESME_RX_P_APPN"

# ---- device -> UE asking for an acknowledgement; ue1 gets what it has not yet ------------------
# what m5s pushed to ue1, on any session (a push repeated because its acknowledgement was cut
# off by the end of an m5c send is the same line again: counted once)
ue1_got() { cat send-1.out send-2.out send-3.out listen.out 2>/dev/null | grep '^{' | awk '!seen[$0]++' >ue1.json || true; }
ue1_got
want=$((4 - $(grep -c '"msgType":"IMDN"' ue1.json || true)))
m5c_listen_bg ue1 tls listen.out "$want" 30
LISTEN_PID=$M5C_LISTEN_PID
smsc mo u1 "$SM1" 2000 0 "$(hexof 'door open')" registered_delivery=0x04
smsc_wait '^MORESP u1 0$' 20 "device -> UE answered"
wait_pid_rc "$LISTEN_PID" 30
[[ $WAIT_RC == 0 ]] || m5s_fail "ue1 did not get the message and 3 reports: $(cat listen.out)"
ue1_got
L='L.filter((m) => m.msgType !== "MSGRESP")'
imdn() { # ID: the report on ID, once
  echo "$L.filter((m) => m.msgType === 'IMDN' && m.msgId === '$1').length === 1 &&
    $L.find((m) => m.msgType === 'IMDN' && m.msgId === '$1')"
}
jcheck ue1.json "$L.length === 4" "ue1 got 3 reports and 1 message, nothing twice"
jcheck ue1.json "($(imdn "$ID_P_APPN")).delivSt === 'REPT_DELY_FAILED' &&
  ($(imdn "$ID_P_APPN")).failureCause === 'REJECTED_BY_RECIPIENT'" "report: submit_sm_resp ESME_RX_P_APPN"
jcheck ue1.json "($(imdn "$ID_DSTADR")).delivSt === 'REPT_DELY_FAILED' &&
  ($(imdn "$ID_DSTADR")).failureCause === 'UNKNOWN_RECIPIENT'" "report: submit_sm_resp ESME_RINVDSTADR"
jcheck ue1.json "($(imdn "$ID_UNDELIV")).delivSt === 'REPT_DELY_FAILED' &&
  ($(imdn "$ID_UNDELIV")).oriAddr.addr === 'sm1' &&
  ($(imdn "$ID_UNDELIV")).failureCause === 'SMSC receipt: stat UNDELIV err 012'" "report: receipt stat:UNDELIV"
jcheck ue1.json "L.filter((m) => m.msgType === 'MSG').length === 1 &&
  L.find((m) => m.msgType === 'MSG').payloadText === 'door open' &&
  L.find((m) => m.msgType === 'MSG').oriAddr.addr === 'sm1' &&
  L.find((m) => m.msgType === 'MSG').delivStReqInd === true" "device -> UE with delivStReqInd"
U1=$(node -e 'for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
  const i = l.indexOf("{"); if (i < 0) continue; const m = JSON.parse(l.slice(i));
  if (m.msgType === "MSG") process.stdout.write(m.msgId); }' ue1.json)
# m5c's report on it reaches the device as an ESME Delivery Acknowledgement from ue1's route
wait_submits 6 "ue1's report to the device"
submits_check "L.length === 6 && L[5].esm_class === 0x08 && L[5].source_addr === '2000' &&
  L[5].destination_addr === '$SM1' && L[5].data_coding === 0 &&
  L[5].text === 'id:$U1 sub:001 dlvrd:001 stat:DELIVRD err:000 text:'" \
  "ue1's report as an ESME Delivery Acknowledgement"
echo "ok: failure reports to ue1; ue1's report to the device as an ESME Delivery Acknowledgement"

wait_spool 0 10 || fail "the spool is not empty: $(cat "$M5_TMP/health.json")"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "PASS"
