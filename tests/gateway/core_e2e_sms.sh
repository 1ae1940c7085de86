#!/usr/bin/env bash
# m5gw of kind sms end to end: the real m5s, m5-aanf, m5c and m5ctl, the npm `smpp` SMSC
# (core_sms_smsc.mjs). The gateway binds, registers its device sm1, gets a UE's message
# to sm1 through m5s's deliver-message as a submit_sm (a report asked for: the SMSC's receipt
# reaches ue1 as the device's report through deliver-report), and a mobile-originated
# deliver_sm from the device to the route 2000 (= UE ue1) is answered only after m5s
# acknowledged it and reaches ue1.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/core_lib.bash"

"$M5_SRC/tests/schema/ensure-node-deps.sh" >/dev/null

gw_pki
start_aanf
start_m5s
setup_ue ue1 001010000000801 b1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
node "$M5_SRC/tests/gateway/core_sms_smsc.mjs" 491700000001 "hello ue1" >smsc.out 2>&1 &
SMSC_PID=$!
track_pid "$SMSC_PID"
wait_file_line smsc.out '^PORT ' 30 "$SMSC_PID" || fail "the SMSC did not start: $(cat smsc.out)"
SMSC_PORT=$(sed -n 's/^PORT //p' smsc.out)

STANDIN_URL="https://localhost:$M5S_NORTH"
GW_LOOP_LOG=/dev/null
start_gw_kind sms \
  "sms: {host: 127.0.0.1, port: $SMSC_PORT, system_id: gw1, password: pw, devices: ['491700000001=sm1'], routes: ['2000=UE:ue1']}"
gw_add_at_m5s sms 'sm*'
wait_file_line smsc.out '^BOUND' 30 "$SMSC_PID" || fail "m5gw did not bind: $(tail -10 "$GW_LOG")"
wait_file_line "$GW_LOG" 'registration of sm1: done' 30 "$GW_PID" ||
  m5s_fail "sm1 not registered: $(tail -10 "$GW_LOG")"
# the adapter names its devices to the core, which then checks m5s holds nothing else for gw1
# (docs/gateways.md "Registration"): sm1 is kept, and still served below
wait_file_line "$GW_LOG" 'registrations: m5s held 1 UE Service ID\(s\) for gw1; 0 not configured' 30 "$GW_PID" ||
  m5s_fail "no convergence of m5s to the configured devices: $(grep registrations "$GW_LOG")"

# UE -> SMS device, with a delivery report asked for: the SMSC's receipt becomes the report
timeout 30 "$M5_BIN/m5c" --config ue1.yaml --server "$(m5c_uri tls)" send --to ue:sm1 \
  --payload 'hi sms' --report >send.out 2>&1 || m5s_fail "m5c send: $(cat send.out)"
SENT_ID=$(grep -o '"msgId":"[^"]*"' send.out | head -n 1)
[[ -n $SENT_ID ]] || fail "no msgId in the answer: $(cat send.out)"
wait_file_line smsc.out '^SUBMIT 491700000001 hi sms$' 30 "$SMSC_PID" ||
  m5s_fail "no submit_sm to the device: $(cat smsc.out; tail -10 "$GW_LOG")"
wait_file_line smsc.out '^RECEIPT 0$' 30 "$SMSC_PID" ||
  m5s_fail "no receipt asked for, or not acknowledged: $(cat smsc.out; tail -10 "$GW_LOG")"

# SMS device -> UE: answered 0 once m5s has it, then delivered to ue1
wait_file_line smsc.out '^MO 0$' 30 "$SMSC_PID" ||
  m5s_fail "the deliver_sm was not acknowledged: $(cat smsc.out; tail -10 "$GW_LOG")"
timeout 40 "$M5_BIN/m5c" --config ue1.yaml --server "$(m5c_uri tls)" listen --count 2 \
  --timeout 30 >listen.out 2>&1 || m5s_fail "ue1 did not get the report and the message: $(cat listen.out)"
# the report: from the device, on ue1's message, delivered
grep -q '"msgType":"IMDN".*"oriAddr":{"addrType":"UE","addr":"sm1"}.*'"$SENT_ID"'.*"delivSt":"REPT_DELY_SUCCESS"' listen.out ||
  fail "no delivery report from sm1 on $SENT_ID: $(cat listen.out; tail -10 "$GW_LOG")"
grep -q '"oriAddr":{"addrType":"UE","addr":"sm1"},"destAddr":{"addrType":"UE","addr":"ue1"}' listen.out ||
  fail "not from sm1: $(cat listen.out)"
grep -q '"payloadText":"hello ue1"' listen.out || fail "payload: $(cat listen.out)"
wait_spool 0 10 || fail "the spool is not empty: $(cat "$M5_TMP/health.json")"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "PASS"
