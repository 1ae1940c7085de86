#!/usr/bin/env bash
# The gateway core end to end with the real m5s, m5-aanf, m5c and m5ctl: a UE (m5c over TLS) sends to
# a device of the test-only loop kind, which echoes: the message reaches the adapter through
# m5s's deliver-message, the device's report and its echo come back through the gateway's
# spool and deliver-ue-message / deliver-report, and the UE's report on the echo reaches the
# adapter through the gateway's deliver-report. The gateway registered its device itself, and
# got its token only once m5s knew it.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/core_lib.bash"

gw_pki
start_aanf
start_m5s
setup_ue ue1 001010000000801 b1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
STANDIN_URL="https://localhost:$M5S_NORTH"
start_gw "loop: {log: $GW_LOOP_LOG, register: [mq1]}"
gw_add_at_m5s mqtt 'mq*'
wait_file_line "$GW_LOOP_LOG" '"event":"registered","status":0' 30 "$GW_PID" ||
  m5s_fail "mq1 not registered: $(cat "$GW_LOOP_LOG"; tail -5 "$GW_LOG")"

# UE -> device, with a report asked for and store-and-forward (the echo then waits for ue1)
timeout 30 "$M5_BIN/m5c" --config ue1.yaml --server "$(m5c_uri tls)" send --to ue:mq1 --payload hi --msg-id e2e1 --report \
  --store-forward >send.out 2>&1 || m5s_fail "m5c send: $(cat send.out)"
wait_file_line "$GW_LOOP_LOG" '"event":"deliver","oriType":"UE","ori":"ue1","destType":"UE","dest":"mq1","msgId":"e2e1","payload":"hi","report":true' 30 ||
  m5s_fail "the device did not get e2e1: $(cat "$GW_LOOP_LOG")"
wait_file_line "$GW_LOOP_LOG" '"msgId":"echo-e2e1","phase":"ACCEPTED"' 30 ||
  m5s_fail "m5s did not accept the echo: $(tail -5 "$GW_LOOP_LOG"; tail -5 "$GW_LOG")"

# device -> UE: the echo, and the device's report on e2e1; ue1 answers the echo's report
timeout 40 "$M5_BIN/m5c" --config ue1.yaml --server "$(m5c_uri tls)" listen --count 2 --timeout 30 >listen.out 2>&1 ||
  m5s_fail "ue1 did not get the echo and the report: $(cat listen.out)"
grep -q '"msgType":"MSG","oriAddr":{"addrType":"UE","addr":"mq1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"echo-e2e1"' listen.out ||
  fail "no echo from mq1: $(cat listen.out)"
grep -q '"payloadText":"hi"' listen.out || fail "the echo's payload: $(cat listen.out)"
grep '"msgType":"IMDN"' listen.out | grep -q '"msgId":"e2e1"' ||
  fail "no report on e2e1 from the device: $(cat listen.out)"
wait_file_line "$GW_LOOP_LOG" '"event":"report","ori":"mq1","dest":"ue1","msgId":"echo-e2e1","delivSt":"REPT_DELY_SUCCESS"' 30 ||
  m5s_fail "ue1's report on the echo did not reach the adapter: $(tail -5 "$GW_LOOP_LOG")"
wait_spool 0 10 || fail "the spool is not empty: $(cat "$M5_TMP/health.json")"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "PASS"
