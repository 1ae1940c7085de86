#!/usr/bin/env bash
# The gateway's MSGG listener (MSGG_N3GDelivery here: the test build's "loop" kind) with curl
# playing m5s: only m5s's certificate gets through the handshake (not an AS's, a gateway's,
# one of the same CA naming another host, one without clientAuth, none); deliver-message
# goes to the adapter and its outcome is the answer (204, 404, 503 with Retry-After, 400);
# deliver-report reaches the adapter (204); bad bodies get a ProblemDetails naming the IE, and
# the adapter never sees them; at most msgg.max_inflight deliveries wait for the device side
# (503 beyond); those still waiting when SIGTERM comes are answered 503 and m5gw exits 0.
# Every ProblemDetails validates against TS 29.571.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/core_lib.bash"
N3G=TS29538_MSGG_N3GDelivery.yaml

gw_pki
make_cert rogue "DNS:evil.localhost" clientAuth
GW_MSGG_EXTRA=", max_inflight: 2"
start_gw

body() { # FILE DEST [extra members]
  printf '{"oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"UE","addr":"%s"},"msgId":"%s","payload":"aGk="%s}\n' \
    "$2" "${3:-m-$2}" "${4:-}" >"$1"
}
delivers() { grep -c '"event":"deliver"' "$GW_LOOP_LOG" || true; }

# -- m5s delivers to a device: 204, and the adapter got exactly that message
body ok.json mq1 m1 ',"delivStReqInd":false,"appId":"app7"'
validate $N3G N3gMessageDelivery ok.json
st=$(gw_post deliver-message ok.json m5s out.json)
[[ $st == 204 ]] || fail "deliver-message: $st $(cat out.json)"
grep -q '"event":"deliver","oriType":"UE","ori":"ue1","destType":"UE","dest":"mq1","msgId":"m1","payload":"hi","report":false,"appId":"app7"' \
  "$GW_LOOP_LOG" || fail "the adapter did not get the message: $(cat "$GW_LOOP_LOG")"

# -- the adapter's outcomes become the answers
body u.json unknown1
st=$(gw_post deliver-message u.json m5s out.json)
[[ $st == 404 ]] || fail "unknown device: $st"
expect_problem out.json 404 UNKNOWN_DEVICE destAddr
body b.json busy1
st=$(gw_post deliver-message b.json m5s out.json)
[[ $st == 503 ]] || fail "busy device side: $st"
expect_problem out.json 503 DEVICE_SIDE_UNAVAILABLE
grep -qi '^retry-after: [0-9]' out.json.headers || fail "503 without Retry-After"
body t.json toolarge1
st=$(gw_post deliver-message t.json m5s out.json)
[[ $st == 400 ]] || fail "content the device cannot carry: $st"
expect_problem out.json 400 CONTENT_NOT_SUPPORTED payload

# -- bad bodies: a precise ProblemDetails, nothing reaches the adapter
n=$(delivers)
printf '{"oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"UE","addr":"mq1"},"payload":"aGk="}' >bad1.json
st=$(gw_post deliver-message bad1.json m5s out.json)
[[ $st == 400 ]] || fail "no msgId: $st"
expect_problem out.json 400 MANDATORY_IE_MISSING msgId
body bad2.json mq1 m2
sed -i 's/"aGk="/"%%not base64"/' bad2.json
st=$(gw_post deliver-message bad2.json m5s out.json)
[[ $st == 400 ]] || fail "bad payload: $st"
expect_problem out.json 400 INVALID_MSG_FORMAT payload
printf '{"oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"GROUP","addr":"g1"},"msgId":"m3","payload":"aGk="}' >bad3.json
st=$(gw_post deliver-message bad3.json m5s out.json)
[[ $st == 400 ]] || fail "destAddr GROUP: $st"
expect_problem out.json 400 INVALID_MSG_FORMAT destAddr
body bad4.json mq1 m4 ',"segInd":true,"segParams":{"segId":"s1"}'
st=$(gw_post deliver-message bad4.json m5s out.json)
[[ $st == 400 ]] || fail "segInd: $st"
expect_problem out.json 400 INVALID_MSG_FORMAT segInd
printf '[1,2]' >bad5.json
st=$(gw_post deliver-message bad5.json m5s out.json)
[[ $st == 400 ]] || fail "not an object: $st"
validate_sent TS29571_CommonData.yaml ProblemDetails out.json
st=$(curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/m5s.crt" --key "$PKI/m5s.key" \
  -H 'content-type: text/plain' --data-binary @ok.json -o out.json -w '%{http_code}' \
  "https://localhost:$GW_MSGG/msgg-n3gdelivery/v1/deliver-message")
[[ $st == 415 ]] || fail "text/plain: $st"
validate_sent TS29571_CommonData.yaml ProblemDetails out.json
st=$(curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/m5s.crt" --key "$PKI/m5s.key" \
  -H 'content-type: application/json' --data-binary @ok.json -o out.json -w '%{http_code}' \
  "https://localhost:$GW_MSGG/msgg-l3gdelivery/v1/deliver-message")
[[ $st == 404 ]] || fail "the other kind's API: $st"
validate_sent TS29571_CommonData.yaml ProblemDetails out.json
st=$(gw_post deliver-message ok.json m5s out.json -X PUT)
[[ $st == 405 ]] || fail "PUT: $st"
[[ $(delivers) == "$n" ]] || fail "a refused body reached the adapter: $(cat "$GW_LOOP_LOG")"

# -- deliver-report: to the adapter, 204; a bad delivSt: 400
# (oriAddr: the reporter, ue1; destAddr: our device mq1, whose message up1 it reports on; the
# adapter gets them as the message's sender mq1 and recipient ue1)
printf '{"oriAddr":{"addrType":"UE","addr":"ue1"},"destAddr":{"addrType":"UE","addr":"mq1"},"msgId":"up1","delivSt":"REPT_DELY_FAILED","failureCause":"EXPIRED"}' >rep.json
validate TS29538_MSGS_MSGDelivery.yaml DeliveryStatusReport rep.json
st=$(gw_post deliver-report rep.json m5s out.json)
[[ $st == 204 ]] || fail "deliver-report: $st $(cat out.json)"
grep -q '"event":"report","ori":"mq1","dest":"ue1","msgId":"up1","delivSt":"REPT_DELY_FAILED","destType":"UE","failureCause":"EXPIRED"' \
  "$GW_LOOP_LOG" || fail "the adapter did not get the report: $(cat "$GW_LOOP_LOG")"
sed 's/REPT_DELY_FAILED/MAYBE/' rep.json >rep2.json
st=$(gw_post deliver-report rep2.json m5s out.json)
[[ $st == 400 ]] || fail "delivSt MAYBE: $st"
expect_problem out.json 400 INVALID_MSG_FORMAT delivSt

# -- only m5s: every other certificate fails the handshake, nothing reaches the adapter; also
# the gateway's own two from m5ctl pki issue (msgg-gw1 names localhost, m5s's name, but is no
# client certificate)
n=$(delivers)
for who in as1 gw1 gw-gw1 msgg-gw1 rogue aanf -; do
  st=$(gw_post deliver-message ok.json "$who" out.json)
  [[ $st == 000 ]] || fail "certificate '$who' was accepted: $st $(cat out.json 2>/dev/null)"
done
[[ $(delivers) == "$n" ]] || fail "a refused caller reached the adapter"
grep -q '"event":"deliver"' "$GW_LOOP_LOG"

# -- deliveries waiting for the device side: at most msgg.max_inflight (2), a third gets 503;
# those still waiting when SIGTERM comes are answered 503 and m5gw exits 0
for k in 1 2; do
  body "s$k.json" "silent$k"
  gw_post deliver-message "s$k.json" m5s "silent$k.json" >"silent$k.status" &
  eval "cpid$k=\$!"
  wait_file_line "$GW_LOOP_LOG" "\"dest\":\"silent$k\"" 10 || fail "the silent delivery $k did not start"
done
n=$(delivers)
st=$(gw_post deliver-message ok.json m5s out.json)
[[ $st == 503 ]] || fail "a third delivery while 2 wait: $st, want 503"
expect_problem out.json 503 ""
grep -q 'too many deliveries' out.json || fail "503 detail: $(cat out.json)"
[[ $(delivers) == "$n" ]] || fail "the third delivery reached the adapter"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
wait_pid_rc "$cpid1" 10
wait_pid_rc "$cpid2" 10
for k in 1 2; do
  [[ $(cat "silent$k.status") == 503 ]] || fail "waiting delivery $k got $(cat "silent$k.status"), want 503"
done
grep -q '"event":"stopped"' "$GW_LOOP_LOG" || fail "the adapter was not stopped"
echo "PASS"
