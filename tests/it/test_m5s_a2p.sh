#!/usr/bin/env bash
# Integration: application-to-point (docs/northbound.md): an Application Server sends to UEs
# with POST /msgs-msgdelivery/v1/deliver-as-message (curl over HTTP/2, mTLS, bearer token), with
# the reliable-delivery semantics of UE messages (docs/delivery.md):
#  - a live UE (m5c listen over DTLS) gets the MSG from oriAddr {AS, as1}; the AS gets 200 +
#    MessageDeliveryAck (valid against TS 29.538) without a status;
#  - an offline UE: DELY_STORED with stoAndFwInd, delivered when it listens; without:
#    DELY_FAILED RECIPIENT_UNREACHABLE; an unknown UE: DELY_FAILED UNKNOWN_RECIPIENT;
#  - the same msgId again: the first answer, no second delivery;
#  - refusals: another oriAddr (403), a missing stoAndFwInd or destAddr, bad base64 (400, the
#    IE named), not JSON (400), wrong content type (415), a token without msgs-msgdelivery
#    (403 insufficient_scope), no token (401).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
start_m5s
setup_ue ue1 001010000000601 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
setup_ue ue2 001010000000602 c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
admin_curl -s -o /dev/null -X PUT -H 'content-type: application/json' -d '{"targets":["127.0.0.1:9"]}' \
  "$M5S_ADMIN/admin/v1/as-clients/as1"

nb() { # METHOD PATH [curl args]: as1 -> $ST, out.json, hdr.txt
  local method=$1 path=$2
  shift 2
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -X "$method" -D hdr.txt -o out.json -w '%{http_code}' "$@" "$NB$path")
}
want() {
  [[ $ST == "$1" ]] || m5s_fail "want $1, got $ST: $(cat out.json)"
  # every ProblemDetails m5s answers carries only the members TS 29.571 declares
  if grep -qi '^content-type: application/problem+json' hdr.txt 2>/dev/null; then
    validate_sent TS29571_CommonData.yaml ProblemDetails out.json
  fi
}
token() { # [SCOPE] -> $TOKEN
  local form=grant_type=client_credentials
  [[ -n ${1:-} ]] && form+="&scope=$1"
  nb POST /oauth2/token -H 'content-type: application/x-www-form-urlencoded' -d "$form"
  want 200
  TOKEN=$(json_get out.json access_token)
}
token
A="authorization: Bearer $TOKEN"
JSON=(-H 'content-type: application/json')
msg() { # ID DEST STO [EXTRA]: an ASMessageDelivery body
  printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"%s"},"msgId":"%s","appId":"meter","payload":"aGVsbG8gZnJvbSBhczE=","stoAndFwInd":%s%s}' \
    "$2" "$1" "$3" "${4:-}"
}
send() { # ID DEST STO [EXTRA] -> 200 expected; the ack in out.json. The request is a valid
  # ASMessageDelivery too (checked against TS 29.538 like the answer).
  msg "$@" >req.json
  validate TS29538_MSGS_MSGDelivery.yaml ASMessageDelivery req.json
  nb POST /msgs-msgdelivery/v1/deliver-as-message "${JSON[@]}" -H "$A" -d @req.json
  want 200
  validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
  [[ $(json_get out.json msgId) == "$1" ]] || m5s_fail "ack of $1: $(cat out.json)"
}
listen() { # UE COUNT SECONDS OUT
  set +e
  timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/$1.yaml" --server "$(m5c_uri dtls)" listen \
    --count "$2" --timeout "$3" >"$4" 2>"$4.err"
  LISTEN_RC=$?
  set -e
}

# ---- live UE ----------------------------------------------------------------------------------
listen ue2 1 20 live.out &
LPID=$!
track_pid "$LPID"
wait_file_line "$M5S_LOG" ': ue2: registered' 15 "$LPID" || m5s_fail "ue2 did not register"
send a2p-1 ue2 false
[[ -z $(json_get out.json status) ]] || m5s_fail "live UE: want no status: $(cat out.json)"
grep -q '"oriAddr":{"addrType":"AS","addr":"as1"}' out.json || m5s_fail "ack oriAddr: $(cat out.json)"
wait "$LPID" || m5s_fail "listen failed: $(cat live.out live.out.err)"
grep -q '"msgId":"a2p-1"' live.out && grep -q '"oriAddr":{"addrType":"AS","addr":"as1"}' live.out &&
  grep -q '"payload":"aGVsbG8gZnJvbSBhczE="' live.out || m5s_fail "ue2 got: $(cat live.out)"
echo "ok: AS -> live UE, 200 MessageDeliveryAck"

# ---- offline UE, store-and-forward, duplicates, unknown --------------------------------------
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri dtls)" register \
  >reg1.out 2>&1 || m5s_fail "ue1 register: $(cat reg1.out)"
send a2p-sf ue1 true
[[ $(json_get out.json status) == DELY_STORED ]] || m5s_fail "offline + sto: $(cat out.json)"
send a2p-sf ue1 true # the repeat: the first answer, stored once
[[ $(json_get out.json status) == DELY_STORED ]] || m5s_fail "repeat: $(cat out.json)"
send a2p-nosf ue1 false
[[ $(json_get out.json status) == DELY_FAILED &&
  $(json_get out.json failureCause) == RECIPIENT_UNREACHABLE ]] || m5s_fail "offline: $(cat out.json)"
send a2p-who nobody true
[[ $(json_get out.json failureCause) == UNKNOWN_RECIPIENT ]] || m5s_fail "unknown: $(cat out.json)"
listen ue1 2 4 sf.out
grep -c '"msgId":"a2p-sf"' sf.out | grep -qx 1 || m5s_fail "ue1 stored messages: $(cat sf.out)"
! grep -q 'a2p-nosf' sf.out || m5s_fail "a DELY_FAILED message was delivered: $(cat sf.out)"
echo "ok: store-and-forward, duplicates, unreachable and unknown recipients"

# ---- refusals ---------------------------------------------------------------------------------
P=/msgs-msgdelivery/v1/deliver-as-message
nb POST $P "${JSON[@]}" -H "$A" -d '{"oriAddr":{"addrType":"AS","addr":"as2"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"x","payload":"aGk=","stoAndFwInd":false}'
want 403
nb POST $P "${JSON[@]}" -H "$A" -d '{"oriAddr":{"addrType":"UE","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"x","payload":"aGk=","stoAndFwInd":false}'
want 403
for bad in '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"x","payload":"aGk="}' \
  '{"oriAddr":{"addrType":"AS","addr":"as1"},"msgId":"x","payload":"aGk=","stoAndFwInd":true}' \
  '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"x","payload":"a","stoAndFwInd":true}' \
  '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"bad id","payload":"aGk=","stoAndFwInd":true}' \
  'not json' '[]'; do
  nb POST $P "${JSON[@]}" -H "$A" -d "$bad"
  want 400
  validate_sent TS29571_CommonData.yaml ProblemDetails out.json
done
nb POST $P "${JSON[@]}" -H "$A" -d '{"oriAddr":{"addrType":"AS","addr":"as1"},"msgId":"x","stoAndFwInd":true}'
grep -q '"param":"destAddr"' out.json || m5s_fail "the missing IE is not named: $(cat out.json)"
nb POST $P -H 'content-type: text/plain' -H "$A" -d "$(msg y ue1 true)"
want 415
nb POST $P "${JSON[@]}" -d "$(msg y ue1 true)"
want 401
token msgs-asregistration
nb POST $P "${JSON[@]}" -H "authorization: Bearer $TOKEN" -d "$(msg y ue1 true)"
want 403
grep -qi 'error="insufficient_scope"' hdr.txt || m5s_fail "scope: $(cat hdr.txt)"
nb GET $P -H "$A"
want 405
echo "ok: refusals"
stop_m5s
