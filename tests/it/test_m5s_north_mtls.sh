#!/usr/bin/env bash
# Integration: AS clients that authenticate with their client certificate alone (issue 9,
# point 10; docs/northbound.md, "Who may call"; TS 33.501 Annex Y.4 is TLS-based and the
# TS 29.538 security schemes allow no token). `m5ctl as add --auth mtls` (admin member
# "auth":"mtls"):
#  - such an AS registers (201) and sends to a UE (200, delivered) without an Authorization
#    header, and still only as itself (another oriAddr or asSvcId: 403);
#  - a token it sends anyway is checked: a valid one is accepted, a bad one is 401;
#  - a token-mode AS (the default) without a token gets 401 as before;
#  - switching the mode (PUT again) takes effect on the next request, both ways, and the mode
#    survives a restart (GET shows "auth").
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

M5CTL="$M5_BIN/m5ctl"
make_pki
timeout 60 "$M5CTL" pki issue --as-svc-id as2 --dir "$M5_TMP/pki" >/dev/null
start_aanf
start_m5s
setup_ue ue1 001010000000701 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
PKI=$M5_TMP/pki

ctl_ok() { # WANT_LINE ARGS...: m5ctl exits 0 printing WANT_LINE
  local want=$1 out
  shift
  out=$(timeout 30 "$M5CTL" "$@" --m5s-admin "$M5S_ADMIN" 2>&1) || m5s_fail "m5ctl $*: $out"
  [[ $out == "$want" ]] || m5s_fail "m5ctl $*: printed '$out', want '$want'"
}
auth_is() { # ID MODE: GET on the admin API shows that mode
  local st
  st=$(admin_curl -s -o get.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/as-clients/$1")
  [[ $st == 200 && $(json_get get.json auth) == "$2" ]] ||
    m5s_fail "GET $1: want auth $2: HTTP $st $(cat get.json)"
}
nb() { # AS METHOD PATH [curl args] -> $ST, out.json
  local as=$1 method=$2 path=$3 cert key
  shift 3
  cert=$PKI/as1.crt key=$PKI/as1.key
  [[ $as == as1 ]] || cert=$PKI/as-$as.crt key=$PKI/as-$as.key
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$cert" --key "$key" \
    -X "$method" -D hdr.txt -o out.json -w "%{http_code}" "$@" "https://localhost:$M5S_NORTH$path")
}
want() { [[ $ST == "$1" ]] || m5s_fail "$2: want $1, got $ST: $(cat out.json)"; }
JSON=(-H 'content-type: application/json')
register() { # AS [curl args]
  local as=$1
  shift
  nb "$as" POST /msgs-asregistration/v1/registrations "${JSON[@]}" "$@" \
    -d "{\"asSvcId\":\"$as\",\"appId\":\"meter\"}"
}
send() { # AS ID [curl args]: an ASMessageDelivery from AS to ue1
  local as=$1 id=$2
  shift 2
  printf '{"oriAddr":{"addrType":"AS","addr":"%s"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"%s","payload":"aGk=","stoAndFwInd":true}' \
    "$as" "$id" >req.json
  nb "$as" POST /msgs-msgdelivery/v1/deliver-as-message "${JSON[@]}" "$@" -d @req.json
}
token() { # AS -> $TOKEN
  nb "$1" POST /oauth2/token -d grant_type=client_credentials
  want 200 "token for $1"
  TOKEN=$(json_get out.json access_token)
}

# ---- m5ctl's --auth: token or mtls, for as add only (usage errors, exit 2, nothing sent) -------
for bad in "as add --as-svc-id as1 --target 127.0.0.1:9 --auth none|--auth: expected token or mtls" \
  "as remove --as-svc-id as1 --auth mtls|--auth: only for \`m5ctl as add\`"; do
  rc=0
  timeout 30 "$M5CTL" ${bad%%|*} --m5s-admin "$M5S_ADMIN" >ctl.out 2>ctl.err || rc=$?
  [[ $rc == 2 ]] && grep -qF -- "${bad#*|}" ctl.err || m5s_fail "m5ctl ${bad%%|*}: exit $rc $(cat ctl.err)"
done
ST=$(admin_curl -s -o /dev/null -w '%{http_code}' "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 404 ]] || m5s_fail "a refused m5ctl command created as1: HTTP $ST"

# ---- as1 with auth mtls, as2 with the default ------------------------------------------------
ctl_ok "as1: created, targets 127.0.0.1:9, auth mtls (no access token needed)" \
  as add --as-svc-id as1 --target 127.0.0.1:9 --auth mtls
ctl_ok "as2: created, targets 127.0.0.1:9" as add --as-svc-id as2 --target 127.0.0.1:9
auth_is as1 mtls
auth_is as2 token

register as1
want 201 "as1 (mtls) registers without a token"
validate TS29538_MSGS_ASRegistration.yaml ASRegistrationAck out.json
send as1 mtls-1
want 200 "as1 (mtls) sends without a token"
validate TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
[[ $(json_get out.json status) == DELY_STORED ]] || m5s_fail "as1's message: $(cat out.json)"
register as2
want 401 "as2 (token) registers without a token"
grep -qi '^www-authenticate: Bearer' hdr.txt || m5s_fail "as2: no Bearer challenge"
send as2 token-1
want 401 "as2 (token) sends without a token"
echo "ok: an mtls AS registers and sends without a token; a token AS without one gets 401"

# Still only as itself.
printf '{"oriAddr":{"addrType":"AS","addr":"as2"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"spoof-1","payload":"aGk=","stoAndFwInd":true}' >req.json
nb as1 POST /msgs-msgdelivery/v1/deliver-as-message "${JSON[@]}" -d @req.json
want 403 "as1 (mtls) sending as as2"
[[ $(json_get out.json cause) == AS_ID_MISMATCH ]] || m5s_fail "spoof: $(cat out.json)"
nb as1 POST /msgs-asregistration/v1/registrations "${JSON[@]}" -d '{"asSvcId":"as2","appId":"x"}'
want 403 "as1 (mtls) registering as2"

# A token it sends anyway is checked.
token as1
send as1 mtls-2 -H "authorization: Bearer $TOKEN"
want 200 "as1 (mtls) with its valid token"
send as1 mtls-3 -H "authorization: Bearer ${TOKEN%?}x"
want 401 "as1 (mtls) with a tampered token"
token as2
send as1 mtls-4 -H "authorization: Bearer $TOKEN"
want 401 "as1 (mtls) with as2's token"
send as2 token-2 -H "authorization: Bearer $TOKEN"
want 200 "as2 (token) with its token"
echo "ok: an mtls AS acts only as itself; a token it sends is checked like anyone's"

# The messages arrive as the ASes sent them.
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri dtls)" listen \
  --count 3 --timeout 20 >listen.out 2>listen.err || m5s_fail "ue1 listen: $(cat listen.out listen.err)"
for m in 'mtls-1","payload' 'mtls-2"' 'token-2"'; do
  grep -q "\"msgId\":\"$m" listen.out || m5s_fail "ue1 did not get $m: $(cat listen.out)"
done
grep -q '"msgId":"mtls-1".*' listen.out && grep -q '"oriAddr":{"addrType":"AS","addr":"as1"}' listen.out ||
  m5s_fail "ue1 got: $(cat listen.out)"

# ---- switching takes effect at once, both ways, and persists ---------------------------------
ctl_ok "as1: updated, targets 127.0.0.1:9" as add --as-svc-id as1 --target 127.0.0.1:9 --auth token
auth_is as1 token
send as1 switch-1
want 401 "as1 switched to token, without a token"
ctl_ok "as2: updated, targets 127.0.0.1:9, auth mtls (no access token needed)" \
  as add --as-svc-id as2 --target 127.0.0.1:9 --auth mtls
send as2 switch-2
want 200 "as2 switched to mtls, without a token"
# The raw admin member, and a bad one.
ST=$(admin_curl -s -o put.json -w '%{http_code}' -X PUT "${JSON[@]}" \
  -d '{"targets":["127.0.0.1:9"],"auth":"none"}' "$M5S_ADMIN/admin/v1/as-clients/as2")
[[ $ST == 400 ]] && grep -q '"param":"auth"' put.json || m5s_fail "auth none: HTTP $ST $(cat put.json)"
auth_is as2 mtls
stop_m5s
start_m5s
auth_is as1 token
auth_is as2 mtls
send as2 switch-3
want 200 "as2 (mtls) after a restart, without a token"
send as1 switch-4
want 401 "as1 (token) after a restart, without a token"
echo "ok: switching the mode takes effect at once and survives a restart"
echo "PASS test_m5s_north_mtls"
