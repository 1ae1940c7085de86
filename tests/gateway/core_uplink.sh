#!/usr/bin/env bash
# The gateway core towards m5s, against a node stand-in for m5s's API (core_m5s_standin.mjs)
# and curl as m5s towards the gateway: the token (client credentials with the gateway's
# certificate, renewed before it expires), the registration of the adapter's devices, what a
# device sends (here: the loop kind's echo) POSTed as a UEMessageDelivery with the token and a
# report as a DeliveryStatusReport (both schema-checked in strict mode by the stand-in), a 403
# ending a message as REFUSED; then m5s failing (503): messages held in the spool with bounded
# back-off, a token m5s stops honouring replaced, the gateway killed with -9, restarted: everything re-sent, nothing lost; a full
# spool refuses.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/core_lib.bash"

gw_pki
start_standin 3 # tokens live 3 s: renewed at 2.4 s
GW_SPOOL="$M5_TMP/gw/spool.db"
start_gw "loop: {log: $GW_LOOP_LOG, register: [mq1, mq2, mq3], deregister: [mq3]}"

body() { # FILE ORI DEST MSGID [extra members]
  printf '{"oriAddr":{"addrType":"UE","addr":"%s"},"destAddr":{"addrType":"UE","addr":"%s"},"msgId":"%s","payload":"aGk="%s}\n' \
    "$2" "$3" "$4" "${5:-}" >"$1"
}

# -- token and registration
wait_file_line "$GW_LOOP_LOG" '"event":"registered","status":0' 20 "$GW_PID" ||
  fail "the devices were not registered: $(cat "$GW_LOOP_LOG"; cat "$STANDIN_LOG")"
tok=$(standin_lines 'r.path === "/oauth2/token" && r.status === 200')
[[ -n $tok ]] || fail "no token issued: $(cat "$STANDIN_LOG")"
grep -q 'grant_type=client_credentials' <<<"$tok" || fail "token request: $tok"
grep -q 'URI:urn:msgin5g:gw:gw1' <<<"$tok" || fail "token request without the gateway's certificate: $tok"
reg=$(standin_lines 'r.path === "/msgs-gwueregistration/v1/registrations" && r.status === 201 && r.auth')
grep -q '"body":{"gwId":"gw1","ueSvcIds":\["mq1","mq2","mq3"\]}' <<<"$reg" ||
  fail "registration: $(cat "$STANDIN_LOG")"
wait_file_line "$GW_LOOP_LOG" '"event":"deregistered","status":0' 20 "$GW_PID" ||
  fail "mq3 was not de-registered: $(cat "$GW_LOOP_LOG")"
[[ -n $(standin_lines 'r.method === "DELETE" && r.path === "/msgs-gwueregistration/v1/registrations/mq3" && r.auth && r.status === 204') ]] ||
  fail "no DELETE of mq3 with the token: $(cat "$STANDIN_LOG")"

# -- m5s delivers to mq1 asking for a report: the echo comes up, and the report
body m1.json ue1 mq1 m1 ',"delivStReqInd":true'
st=$(gw_post deliver-message m1.json m5s out.json)
[[ $st == 204 ]] || fail "deliver-message: $st $(cat out.json)"
wait_file_line "$GW_LOOP_LOG" '"msgId":"echo-m1","phase":"ACCEPTED"' 20 "$GW_PID" ||
  fail "the echo was not accepted: $(cat "$GW_LOOP_LOG")"
grep -q '"msgId":"echo-m1","phase":"SPOOLED"' "$GW_LOOP_LOG" || fail "no SPOOLED before ACCEPTED"
up=$(standin_lines 'r.path === "/msgs-msgdelivery/v1/deliver-ue-message" && r.body.msgId === "echo-m1"')
grep -q '"auth":true' <<<"$up" || fail "deliver-ue-message without the token: $up"
grep -q '"schema":"ok"' <<<"$up" || fail "the UEMessageDelivery is not valid: $up"
grep -q '"oriAddr":{"addrType":"UE","addr":"mq1"},"destAddr":{"addrType":"UE","addr":"ue1"}' <<<"$up" ||
  fail "addresses: $up"
grep -q '"payload":"aGk="' <<<"$up" || fail "payload: $up"
for ((i = 0; i < 100; i++)); do
  rep=$(standin_lines 'r.path === "/msgs-msgdelivery/v1/deliver-report" && r.body.msgId === "m1"')
  [[ -n $rep ]] && break
  sleep 0.1
done
grep -q '"schema":"ok","status":204' <<<"$rep" || fail "the report: $rep $(tail -5 "$STANDIN_LOG")"
grep -q '"delivSt":"REPT_DELY_SUCCESS"' <<<"$rep" || fail "the report's delivSt: $rep"
grep -q '"oriAddr":{"addrType":"UE","addr":"mq1"},"destAddr":{"addrType":"UE","addr":"ue1"}' <<<"$rep" ||
  fail "the report must come from the device (oriAddr) about ue1's message (destAddr): $rep"

# -- m5s refuses one for good (403): REFUSED, not kept
body r.json refuse1 mq1 m2
st=$(gw_post deliver-message r.json m5s out.json)
[[ $st == 204 ]] || fail "deliver-message: $st"
wait_file_line "$GW_LOOP_LOG" '"msgId":"echo-m2","phase":"REFUSED","reason":"destAddr refused by the stand-in"' 20 ||
  fail "the refusal did not reach the adapter: $(tail -3 "$GW_LOOP_LOG")"
wait_spool 0 10 || fail "the spool keeps a refused message: $(cat "$M5_TMP/health.json")"

# -- the token is renewed before it expires (3 s lifetime)
for ((i = 0; i < 100; i++)); do
  n=$(standin_lines 'r.path === "/oauth2/token" && r.status === 200' | wc -l)
  ((n >= 2)) && break
  sleep 0.1
done
((n >= 2)) || fail "the token was not renewed"
[[ -z $(standin_lines '!r.auth && r.path !== "/oauth2/token"') ]] ||
  fail "a request went without a valid token: $(standin_lines '!r.auth && r.path !== "/oauth2/token"')"

# -- m5s stops honouring the token (401): a new one is fetched and the message goes through.
# The next token lives an hour, so only the 401 can make the gateway fetch another.
echo 3600 >"$STANDIN_MODE.expires"
for ((i = 0; i < 100; i++)); do
  m=$(standin_lines 'r.path === "/oauth2/token" && r.status === 200' | wc -l)
  ((m > n)) && break
  sleep 0.1
done
((m > n)) || fail "no token renewal after the 2nd"
touch "$STANDIN_MODE.revoke"
body m5.json ue1 mq1 m5
st=$(gw_post deliver-message m5.json m5s out.json)
[[ $st == 204 ]] || fail "deliver-message m5: $st"
wait_file_line "$GW_LOOP_LOG" '"msgId":"echo-m5","phase":"ACCEPTED"' 20 "$GW_PID" ||
  fail "echo-m5 not accepted after the 401: $(tail -3 "$GW_LOOP_LOG")"
[[ -n $(standin_lines 'r.status === 401 && r.body.msgId === "echo-m5"') ]] ||
  fail "the token was not refused first (test set-up): $(tail -5 "$STANDIN_LOG")"

# -- m5s failing: held in the spool, retried with a bounded back-off
echo 503 >"$STANDIN_MODE"
for k in 10 11 12; do
  body "s$k.json" ue1 mq1 "m$k"
  st=$(gw_post deliver-message "s$k.json" m5s out.json)
  [[ $st == 204 ]] || fail "deliver-message m$k: $st"
  wait_file_line "$GW_LOOP_LOG" "\"msgId\":\"echo-m$k\",\"phase\":\"SPOOLED\"" 10 ||
    fail "echo-m$k not spooled"
done
wait_spool 3 10 || fail "the spool does not hold the 3: $(cat "$M5_TMP/health.json")"
wait_file_line "$GW_LOG" 'next attempt in 1000 ms' 20 || fail "the back-off did not reach uplink.retry_max_ms"
! grep -Eq 'next attempt in ([2-9][0-9]{3}|[0-9]{5,}) ms' "$GW_LOG" || fail "a wait above uplink.retry_max_ms"
tries=$(standin_lines 'r.status === 503' | wc -l)
echo "m5s answered 503 to $tries attempts"

# -- kill -9 with the 3 in the spool; restarted with room for 3 only
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
[[ -z $(standin_lines 'r.status === 200 && /^echo-m1[0-2]$/.test(r.body.msgId)') ]] ||
  fail "accepted before m5s recovered?"
mv "$GW_LOG" "$M5_TMP/m5gw.1.log"
start_gw "loop: {log: $GW_LOOP_LOG, register: [mq1, refuse9]}" "spool: {path: $GW_SPOOL, max_msgs: 3}"
grep -q '3 messages and reports from before the restart' "$GW_LOG" ||
  fail "the spool was not reloaded: $(head -20 "$GW_LOG")"
# full: a fourth is refused while m5s still fails
body s13.json ue1 mq1 m13
st=$(gw_post deliver-message s13.json m5s out.json)
[[ $st == 204 ]] || fail "deliver-message m13: $st"
wait_file_line "$GW_LOOP_LOG" '"msgId":"echo-m13","phase":"REFUSED","reason":"the gateway.s spool is full"' 10 ||
  fail "a full spool did not refuse: $(tail -3 "$GW_LOOP_LOG")"
rm -f "$STANDIN_MODE"
wait_spool 0 30 || fail "the spool did not drain: $(cat "$M5_TMP/health.json")"
# a registration m5s refuses for good (retried while m5s answered 503): the adapter hears
# M5_EPERM with the ProblemDetails' detail
wait_file_line "$GW_LOOP_LOG" "\"event\":\"registered\",\"status\":-9,\"reason\":\"403 refuse9 is outside the gateway's pattern\"" 20 "$GW_PID" ||
  fail "the refused registration did not reach the adapter as M5_EPERM: $(tail -5 "$GW_LOOP_LOG")"
for k in 10 11 12; do
  [[ -n $(standin_lines "r.status === 200 && r.body.msgId === 'echo-m$k' && r.schema === 'ok'") ]] ||
    fail "echo-m$k was lost across kill -9"
done
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
grep -q 'stopped; 0 left in the spool' "$GW_LOG" || fail "spool not empty at stop"
echo "PASS"
