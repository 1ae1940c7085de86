#!/usr/bin/env bash
# Integration: who may message whom (docs/delivery.md "Who may message whom"; TS 23.554
# cl. 8.3.2 step 3), checked at acceptance before the recipient is resolved:
#  - GET/PUT/DELETE /admin/v1/policy without the management token (or with a wrong one): 401,
#    nothing changed; GET shows the defaults, source "configuration";
#  - UE -> UE allowed by default; after PUT {"ueToUe": false}: DELY_FAILED NOT_AUTHORIZED for a
#    bound UE and an unknown one alike, and nothing delivered; a GROUP or BC destination gets
#    that same answer; a bad PUT is 400 naming the member and changes nothing;
#  - the stored policy survives a restart; the retransmission of a refused msgId gets the same
#    answer even once the policy allows it again (recorded for dedup);
#  - reports are not messages: ue2's IMDN on ue1's message reaches ue1 while ueToUe is false;
#  - UE -> AS narrowed by ueToAs patterns;
#  - an AS narrowed with `m5ctl as add --ue-svc-ids sensor-*`: 200 to sensor-1; 403 with a
#    ProblemDetails (strict TS 29.571 schema) cause NOT_AUTHORIZED to ue2, to an unknown UE, to a
#    GROUP and to another AS (asToAs is false by default), again for a retransmission, and
#    nothing stored; asToUe false refuses sensor-1 too;
#  - an `m5ctl as add` without --ue-svc-ids widens the client to every UE again;
#  - DELETE brings the configuration's policy back; the policy.* keys set it.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

M5CTL="$M5_BIN/m5ctl"
make_pki
start_aanf
start_m5s
setup_ue ue1 001010000000901 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
setup_ue ue2 001010000000902 c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0
setup_ue sensor-1 001010000000903 d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0
PKI=$M5_TMP/pki
POLICY=/admin/v1/policy
ALLOW_ALL='{"ueToUe":true,"ueToAs":["*"],"asToUe":true,"asToAs":false}'
NO_UE_TO_UE='{"ueToUe":false,"ueToAs":["*"],"asToUe":true,"asToAs":false}'

# policy_req METHOD [BODY]: the admin API with the token -> $ST, pol.json
policy_req() {
  local args=(-s --max-time 5 -o pol.json -w '%{http_code}' -X "$1")
  [[ -n ${2:-} ]] && args+=(-H 'content-type: application/json' -d "$2")
  ST=$(admin_curl "${args[@]}" "$M5S_ADMIN$POLICY")
}
# policy_is UE_TO_UE SOURCE: GET shows ueToUe and source
policy_is() {
  policy_req GET
  [[ $ST == 200 && $(json_get pol.json ueToUe) == "$1" && $(json_get pol.json source) == "$2" ]] ||
    m5s_fail "GET policy: want ueToUe $1 from $2: HTTP $ST $(cat pol.json)"
}
# send UE TO ID [m5c send options...]: the MSGRESP in send.out (m5c exits 1 on DELY_FAILED)
send() {
  local ue=$1 to=$2 id=$3
  shift 3
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" send \
    --to "$to" --msg-id "$id" --payload "hello $id" "$@" >send.out 2>&1 || true
  grep -q '"msgType":"MSGRESP"' send.out || m5s_fail "m5c send $id: no MSGRESP: $(cat send.out)"
}
refused_ue() { # UE TO ID [options]: DELY_FAILED NOT_AUTHORIZED
  send "$@"
  grep -q '"status":"DELY_FAILED"' send.out && grep -q '"failureCause":"NOT_AUTHORIZED"' send.out ||
    m5s_fail "$3 to $2: want DELY_FAILED NOT_AUTHORIZED: $(cat send.out)"
}
stored_ue() { # UE TO ID [options]: accepted, DELY_STORED (the recipient is offline)
  send "$@" --store-forward
  grep -q '"status":"DELY_STORED"' send.out || m5s_fail "$3 to $2: want DELY_STORED: $(cat send.out)"
}

# ---- the admin API needs the token -----------------------------------------------------------
for m in GET PUT DELETE; do
  for auth in none wrong; do
    hdr=()
    [[ $auth == wrong ]] && hdr=(-H "authorization: Bearer $(printf '0%.0s' {1..64})")
    ST=$(curl -s --max-time 5 -o r.json -D h.txt -w '%{http_code}' -X $m "${hdr[@]}" \
      -H 'content-type: application/json' -d "$NO_UE_TO_UE" "$M5S_ADMIN$POLICY")
    [[ $ST == 401 ]] || m5s_fail "$m $POLICY ($auth token): HTTP $ST, want 401: $(cat r.json)"
    grep -qi '^www-authenticate: Bearer' h.txt || m5s_fail "$m $POLICY: no Bearer challenge"
  done
done
policy_is true configuration
[[ $(json_get pol.json ueToAs) == '*' && $(json_get pol.json asToUe) == true &&
  $(json_get pol.json asToAs) == false ]] || m5s_fail "default policy: $(cat pol.json)"
echo "ok: /admin/v1/policy without the token is 401 for every method; defaults shown"

# ---- UE -> UE ---------------------------------------------------------------------------------
stored_ue ue1 ue:ue2 p-ok-1
stored_ue ue1 ue:ue2 p-rep --report
policy_req PUT "$NO_UE_TO_UE"
[[ $ST == 200 && $(json_get pol.json source) == admin ]] || m5s_fail "PUT policy: HTTP $ST $(cat pol.json)"
policy_req PUT '{"ueToUe":true,"ueToAs":["*"],"asToUe":true}'
[[ $ST == 400 ]] && grep -q '"param":"asToAs"' pol.json || m5s_fail "PUT without asToAs: HTTP $ST $(cat pol.json)"
policy_req PUT '{"ueToUe":true,"ueToAs":["a b"],"asToUe":true,"asToAs":false}'
[[ $ST == 400 ]] && grep -q '"param":"ueToAs"' pol.json || m5s_fail "PUT bad pattern: HTTP $ST $(cat pol.json)"
policy_req PUT '{"ueToUe":true,"ueToAs":[],"asToUe":true,"asToAs":false,"groups":true}'
[[ $ST == 400 ]] && grep -q '"param":"groups"' pol.json || m5s_fail "PUT unknown member: HTTP $ST $(cat pol.json)"
policy_req POST "$ALLOW_ALL"
[[ $ST == 405 ]] || m5s_fail "POST policy: HTTP $ST, want 405"
policy_is false admin # the bad PUTs changed nothing
refused_ue ue1 ue:ue2 p-no --store-forward
refused_ue ue1 ue:ue2 p-no --store-forward # the retransmission
refused_ue ue1 ue:ghost p-ghost --store-forward # unknown: the same answer, nothing revealed
refused_ue ue1 group:fleet.7 p-grp --store-forward
refused_ue ue1 bc:area:north p-bc --store-forward
grep -q 'MSG p-no from UE:ue1 to UE:ue2 refused: policy ueToUe is false' "$M5S_LOG" ||
  m5s_fail "the refusal is not logged with its reason"
echo "ok: ueToUe false: DELY_FAILED NOT_AUTHORIZED, for an unknown UE, a GROUP and a BC alike"

# ---- survives a restart -----------------------------------------------------------------------
stop_m5s
start_m5s
policy_is false admin
refused_ue ue1 ue:ue2 p-no-2 --store-forward
echo "ok: the stored policy survives a restart"

# ---- nothing delivered; reports are not messages ----------------------------------------------
# ue2 gets the two messages accepted before the PUT, nothing refused after it, and reports on
# p-rep to ue1 (an IMDN, not a message: ueToUe does not apply), which ue1 then receives.
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" listen \
  --count 3 --timeout 4 >listen2.out 2>listen2.err || true
grep -q '"msgId":"p-ok-1"' listen2.out && grep -q '"msgId":"p-rep"' listen2.out ||
  m5s_fail "ue2 did not get the messages accepted before: $(cat listen2.out listen2.err)"
! grep -Eq '"msgId":"p-(no|no-2|ghost)"' listen2.out || m5s_fail "a refused message was delivered: $(cat listen2.out)"
[[ $(grep -c '"msgType":"MSG"' listen2.out) == 2 ]] || m5s_fail "ue2 got: $(cat listen2.out)"
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 1 --timeout 10 >listen1.out 2>listen1.err || m5s_fail "ue1 got no report: $(cat listen1.out listen1.err)"
grep -q '"msgType":"IMDN"' listen1.out && grep -q '"msgId":"p-rep"' listen1.out &&
  grep -q '"delivSt":"REPT_DELY_SUCCESS"' listen1.out || m5s_fail "ue1's report: $(cat listen1.out)"
echo "ok: nothing refused was delivered; ue2's report reached ue1 while ueToUe was false"

# ---- allowed again: a new msgId passes, the refused one keeps its answer ----------------------
policy_req PUT "$ALLOW_ALL"
[[ $ST == 200 ]] || m5s_fail "PUT allow: HTTP $ST $(cat pol.json)"
refused_ue ue1 ue:ue2 p-no --store-forward
stored_ue ue1 ue:ue2 p-ok-2
echo "ok: a retransmission keeps its NOT_AUTHORIZED answer; a new message is accepted"

# ---- UE -> AS ---------------------------------------------------------------------------------
admin_curl -s -o /dev/null -X PUT -H 'content-type: application/json' \
  -d '{"targets":["127.0.0.1:9"]}' "$M5S_ADMIN/admin/v1/as-clients/as2"
stored_ue ue1 as:as2 p-as-1
policy_req PUT '{"ueToUe":true,"ueToAs":["fleet-*"],"asToUe":true,"asToAs":false}'
[[ $ST == 200 ]] || m5s_fail "PUT ueToAs: HTTP $ST $(cat pol.json)"
refused_ue ue1 as:as2 p-as-2 --store-forward
refused_ue ue1 as:nobody p-as-3 --store-forward
policy_req PUT "$ALLOW_ALL"
echo "ok: UE -> AS by the ueToAs patterns"

# ---- an AS narrowed with --ue-svc-ids ---------------------------------------------------------
out=$(timeout 30 "$M5CTL" as add --as-svc-id as1 --target 127.0.0.1:9 --ue-svc-ids 'sensor-*' \
  --m5s-admin "$M5S_ADMIN" 2>&1) || m5s_fail "m5ctl as add --ue-svc-ids: $out"
[[ $out == "as1: created, targets 127.0.0.1:9, ueSvcIds sensor-*" ]] || m5s_fail "m5ctl printed: $out"
ST=$(admin_curl -s -o as1.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 200 && $(json_get as1.json ueSvcIds) == 'sensor-*' ]] || m5s_fail "GET as1: $(cat as1.json)"
rc=0
timeout 30 "$M5CTL" as add --as-svc-id as1 --target 127.0.0.1:9 --ue-svc-ids 'a,,b' \
  --m5s-admin "$M5S_ADMIN" >/dev/null 2>err.txt || rc=$?
[[ $rc == 2 ]] && grep -q -- '--ue-svc-ids' err.txt || m5s_fail "empty pattern: exit $rc $(cat err.txt)"
ST=$(admin_curl -s -o bad.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"targets":["127.0.0.1:9"],"ueSvcIds":"sensor-*"}' "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 400 ]] && grep -q '"param":"ueSvcIds"' bad.json || m5s_fail "ueSvcIds not a list: HTTP $ST $(cat bad.json)"

nb() { # METHOD PATH [curl args]: as1 -> $ST, out.json, hdr.txt
  local method=$1 path=$2
  shift 2
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -X "$method" -D hdr.txt -o out.json -w '%{http_code}' "$@" \
    "https://localhost:$M5S_NORTH$path") # the port of this m5s (a restart picks new ones)
}
nb POST /oauth2/token -d grant_type=client_credentials
[[ $ST == 200 ]] || m5s_fail "token: HTTP $ST $(cat out.json)"
A="authorization: Bearer $(json_get out.json access_token)"
as_send() { # TYPE ADDR ID -> $ST, out.json
  printf '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"%s","addr":"%s"},"msgId":"%s","payload":"aGk=","stoAndFwInd":true}' \
    "$1" "$2" "$3" >req.json
  nb POST /msgs-msgdelivery/v1/deliver-as-message -H 'content-type: application/json' -H "$A" -d @req.json
}
as_refused() { # TYPE ADDR ID: 403 ProblemDetails NOT_AUTHORIZED
  as_send "$@"
  [[ $ST == 403 ]] || m5s_fail "as1 -> $1:$2: HTTP $ST, want 403: $(cat out.json)"
  grep -qi '^content-type: application/problem+json' hdr.txt || m5s_fail "403 is not a problem+json"
  expect_problem out.json 403 NOT_AUTHORIZED
}
queued() { curl -s --max-time 5 "$M5S_ADMIN/admin/v1/stats" >stats.json && json_get stats.json messagesQueued; }
as_send UE sensor-1 a-ok-1
[[ $ST == 200 && $(json_get out.json status) == DELY_STORED ]] || m5s_fail "as1 -> sensor-1: HTTP $ST $(cat out.json)"
validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
q0=$(queued)
as_refused UE ue2 a-no-1
as_refused UE ue2 a-no-1 # the retransmission
as_refused UE ghost a-no-2
as_refused GROUP fleet.7 a-no-3
as_refused AS as2 a-no-4
[[ $(queued) == "$q0" ]] || m5s_fail "a refused message was stored: queued $(queued), was $q0"
policy_req PUT '{"ueToUe":true,"ueToAs":["*"],"asToUe":false,"asToAs":false}'
as_refused UE sensor-1 a-no-5
# an `as add` without --ue-svc-ids replaces the client: every UE again (with asToUe back on)
out=$(timeout 30 "$M5CTL" as add --as-svc-id as1 --target 127.0.0.1:9 --m5s-admin "$M5S_ADMIN" 2>&1) ||
  m5s_fail "m5ctl as add: $out"
[[ $out == "as1: updated, targets 127.0.0.1:9" ]] || m5s_fail "m5ctl printed: $out"
policy_req PUT "$ALLOW_ALL"
as_send UE ue2 a-ok-3
[[ $ST == 200 ]] || m5s_fail "as1 widened again -> ue2: HTTP $ST $(cat out.json)"
echo "ok: as1 narrowed to sensor-*: 200 to sensor-1, 403 NOT_AUTHORIZED elsewhere, nothing stored"

# ---- DELETE: the configuration's policy; the policy.* keys ------------------------------------
policy_req DELETE
[[ $ST == 200 && $(json_get pol.json source) == configuration ]] || m5s_fail "DELETE: HTTP $ST $(cat pol.json)"
as_send UE sensor-1 a-ok-2
[[ $ST == 200 ]] || m5s_fail "after DELETE: HTTP $ST $(cat out.json)"
stop_m5s
start_m5s 'policy: {ue_to_ue: false, ue_to_as: ["fleet-*"], as_to_as: true}'
policy_is false configuration
[[ $(json_get pol.json ueToAs) == 'fleet-*' && $(json_get pol.json asToAs) == true ]] ||
  m5s_fail "configured policy: $(cat pol.json)"
refused_ue ue1 ue:ue2 p-cfg --store-forward
stop_m5s
echo "PASS test_m5s_policy"
