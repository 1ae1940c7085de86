#!/usr/bin/env bash
# Integration: Messaging Topics (TS 23.554 cl. 8.8; docs/protocol.md §4, docs/delivery.md
# "Messaging Topics") against the real m5-aanf and m5s (2 workers), with m5c and an AS over the
# northbound API:
#  - ue1, ue2 and ue3 subscribe (m5c subscribe) to meters.east; ue3 (a subscriber too) and the
#    AS as1 publish (m5c send --to topic:, deliver-as-message to a TOPIC address): the live ue1
#    and ue2 get each message once with "via" {TOPIC, meters.east}; the publisher ue3 gets the
#    AS's message (stored while it was away) but not its own; the same msgId again is answered
#    as before and delivered to nobody again;
#  - a TOPICUNSUB ends ue2's subscription; ue4's with --expire 2 ends by itself;
#  - subscriptions survive an m5s restart;
#  - the topic rules (topics.rules): a UE not allowed gets 4.03 msgTopics[0]: NOT_AUTHORIZED on
#    subscribe; a publisher not allowed gets DELY_FAILED NOT_AUTHORIZED (m5c) or 403
#    NOT_AUTHORIZED (the AS), the same for a topic nobody subscribed to;
#  - an AS subscribes through our northbound resource (POST /msgs-topicsubscription/v1/
#    subscriptions, scope msgs-topicsub; 201 + Location; DELETE 204) and gets a UE's message
#    on its targetUri (a local HTTPS receiver); a forbidden topic is 403 NOT_AUTHORIZED;
#  - re-binding ue1 to another subscriber drops its subscriptions: the new ue1 gets nothing.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
SUPI1=001010000001001
KAUSF1=1010101010101010101010101010101010101010101010101010101010101010
SUPI1B=001010000001011
KAUSF1B=1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b
RULES='topics: {rules: ["secret. subscribe=ue:ue1,as:* publish=as:as9"]}'

make_pki
start_aanf
start_m5s "$RULES"
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 001010000001002 2020202020202020202020202020202020202020202020202020202020202020
setup_ue ue3 001010000001003 3030303030303030303030303030303030303030303030303030303030303030
setup_ue ue4 001010000001004 4040404040404040404040404040404040404040404040404040404040404040

# m5c UE OUT CMD ARGS...: m5c over DTLS; its exit status in RC, stdout in OUT, stderr in OUT.err.
m5c() {
  local ue=$1 out=$2
  shift 2
  RC=0
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri dtls)" "$@" \
    >"$out" 2>"$out.err" || RC=$?
}
# listen_id_set OUT: the msgIds the m5c listener printed (listen_ids), sorted, each followed by
# a space.
listen_id_set() { listen_ids "$1" | sort | tr '\n' ' '; }
# listen UE COUNT SECONDS OUT: m5c listen in the foreground; exit status in LISTEN_RC.
listen() {
  set +e
  timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/$1.yaml" --server "$(m5c_uri dtls)" listen \
    --count "$2" --timeout "$3" >"$4" 2>"$4.err"
  LISTEN_RC=$?
  set -e
}
# listen_bg UE COUNT SECONDS OUT: in the background (LPID), once m5s logged its registration.
listen_bg() {
  local before i
  before=$(m5s_log_count "[: ]$1: registered")
  "$M5_BIN/m5c" --config "$M5_TMP/$1.yaml" --server "$(m5c_uri dtls)" listen --count "$2" \
    --timeout "$3" >"$4" 2>"$4.err" &
  LPID=$!
  track_pid "$LPID"
  for ((i = 0; i < 150; i++)); do
    (($(m5s_log_count "[: ]$1: registered") > before)) && return 0
    kill -0 "$LPID" 2>/dev/null || m5s_fail "m5c listen ($1) exited: $(cat "$4.err")"
    sleep 0.1
  done
  m5s_fail "m5c listen ($1) did not register within 15 s"
}
subscribe() { # UE TOPIC [ARGS]: must succeed
  local ue=$1
  shift
  m5c "$ue" sub.out subscribe "$@"
  [[ $RC == 0 ]] || m5s_fail "$ue subscribe $*: exit $RC: $(cat sub.out.err)"
  grep -q "\"msgType\":\"TOPICSUB\",\"msgTopics\":\[\"$1\"\],\"expiry\":\"20" sub.out ||
    m5s_fail "$ue subscribe $1: answer $(cat sub.out)"
}
publish() { # UE ID TOPIC: m5c send, store-and-forward; the MSGRESP in pub.out
  m5c "$1" pub.out send --to "topic:$3" --payload "text of $2" --msg-id "$2" --store-forward
}

# ---- the AS as1 ----------------------------------------------------------------------------------
PKI=$M5_TMP/pki
as1_client # tests/lib.sh: as1 on m5s, its TOKEN, and nb
as_token() {
  nb /oauth2/token -d grant_type=client_credentials
  [[ $ST == 200 ]] || m5s_fail "AS token: $ST $(cat out.json)"
  TOKEN=$(json_get out.json access_token)
}
as_publish() { # ID TOPIC -> $ST, out.json
  nb /msgs-msgdelivery/v1/deliver-as-message -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":\"TOPIC\",\"addr\":\"$2\"},\"msgId\":\"$1\",\"payload\":\"aGk=\",\"stoAndFwInd\":true}"
}

# ---- subscribe, publish from a UE and an AS --------------------------------------------------------
subscribe ue1 meters.east
subscribe ue2 meters.east --expire 3600
subscribe ue3 meters.east
subscribe ue4 meters.east --expire 2
listen_bg ue1 3 10 ue1.out
P1=$LPID
listen_bg ue2 3 10 ue2.out
P2=$LPID
publish ue3 t-1 meters.east
[[ $RC == 0 ]] || m5s_fail "ue3 -> topic: exit $RC: $(cat pub.out.err)"
grep -q '"msgId":"t-1"' pub.out && ! grep -q '"status"' pub.out ||
  m5s_fail "ue3 -> topic: want a MSGRESP without status: $(cat pub.out)"
publish ue3 t-1 meters.east # the same msgId: answered as before, delivered once
grep -q '"msgId":"t-1"' pub.out && ! grep -q '"status"' pub.out ||
  m5s_fail "ue3 -> topic again: $(cat pub.out)"
as_publish a-1 meters.east
[[ $ST == 200 && -z $(json_get out.json status) ]] || m5s_fail "AS -> topic: $ST $(cat out.json)"
wait_pid_rc "$P1" 30
[[ $WAIT_RC == 4 ]] || m5s_fail "ue1 listen: exit $WAIT_RC (want 4: 2 messages, no third)"
wait_pid_rc "$P2" 30
[[ $WAIT_RC == 4 ]] || m5s_fail "ue2 listen: exit $WAIT_RC"
for ue in ue1 ue2; do
  got=$(listen_id_set "$ue.out")
  [[ $got == "a-1 t-1 " ]] || m5s_fail "$ue got '$got', want 'a-1 t-1 ' (each once): $(cat "$ue.out")"
  [[ $(grep -c '"via":{"addrType":"TOPIC","addr":"meters.east"}' "$ue.out") == 2 ]] ||
    m5s_fail "$ue: no via TOPIC meters.east: $(cat "$ue.out")"
done
grep -q '"oriAddr":{"addrType":"UE","addr":"ue3"}.*"msgId":"t-1"' ue1.out ||
  m5s_fail "t-1 lost its originator: $(cat ue1.out)"
listen ue3 2 3 ue3.out
[[ $(listen_id_set ue3.out) == "a-1 " ]] ||
  m5s_fail "the publisher ue3: got '$(listen_id_set ue3.out)', want only the AS's a-1: $(cat ue3.out)"
echo "ok: UE and AS publish to the subscribers, once each, not to the publisher"

# ---- unsubscribe, expiry ---------------------------------------------------------------------------
m5c ue2 unsub.out unsubscribe meters.east
[[ $RC == 0 ]] && grep -q '"msgType":"TOPICUNSUB","msgTopics":\["meters.east"\]' unsub.out ||
  m5s_fail "ue2 unsubscribe: exit $RC: $(cat unsub.out unsub.out.err)"
publish ue3 t-2 meters.east
[[ $RC == 0 ]] || m5s_fail "ue3 -> topic (t-2): $(cat pub.out.err)"
listen ue2 1 3 ue2b.out
[[ -z $(listen_id_set ue2b.out) ]] || m5s_fail "ue2 unsubscribed but got: $(cat ue2b.out)"
listen ue4 3 3 ue4.out # its subscription (--expire 2) ended before t-2, after a-1
[[ $(listen_id_set ue4.out) == "a-1 t-1 " ]] ||
  m5s_fail "ue4 (expired subscription): got '$(listen_id_set ue4.out)', want only 'a-1 t-1 '"
echo "ok: unsubscribe and expiry end a subscription"

# ---- a restart keeps the subscriptions -------------------------------------------------------------
stop_m5s
start_m5s "$RULES"
as_token # the new ports make a new issuer
publish ue3 t-3 meters.east
[[ $RC == 0 ]] || m5s_fail "ue3 -> topic after the restart: $(cat pub.out.err)"
listen ue1 2 4 ue1b.out
[[ $(listen_id_set ue1b.out) == "t-2 t-3 " ]] ||
  m5s_fail "ue1 after the restart: got '$(listen_id_set ue1b.out)', want 't-2 t-3 '"
echo "ok: subscriptions survive a restart"

# ---- the topic rules ----------------------------------------------------------------------------
m5c ue2 forb.out subscribe secret.plans
[[ $RC == 1 ]] && grep -q '4.03' forb.out.err && grep -qF 'msgTopics[0]: NOT_AUTHORIZED' forb.out.err ||
  m5s_fail "ue2 subscribe secret.plans: exit $RC: $(cat forb.out.err)"
m5c ue2 forb.out subscribe meters.west secret.plans
[[ $RC == 1 ]] && grep -qF 'msgTopics[1]: NOT_AUTHORIZED' forb.out.err ||
  m5s_fail "ue2 subscribe meters.west secret.plans: exit $RC: $(cat forb.out.err)"
subscribe ue1 secret.plans
for topic in secret.plans secret.nobody; do
  publish ue3 "s-$topic" "$topic"
  [[ $RC == 1 ]] && grep -q '"status":"DELY_FAILED"' pub.out &&
    grep -q '"failureCause":"NOT_AUTHORIZED"' pub.out ||
    m5s_fail "ue3 -> $topic: exit $RC: $(cat pub.out pub.out.err)"
  as_publish "as-$topic" "$topic"
  [[ $ST == 403 && $(json_get out.json cause) == NOT_AUTHORIZED ]] ||
    m5s_fail "AS -> $topic: $ST $(cat out.json)"
done
echo "ok: topic rules refuse subscribers and publishers, the same for an unused topic"

# ---- the rules on the admin API -----------------------------------------------------------------
ST=$(curl -s -o rules.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/topic-rules")
[[ $ST == 401 ]] || m5s_fail "GET topic-rules without the token: $ST"
ST=$(admin_curl -s -o rules.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/topic-rules")
[[ $ST == 200 ]] && grep -qF '{"rules":["secret. subscribe=ue:ue1,as:* publish=as:as9"]}' rules.json ||
  m5s_fail "GET topic-rules: $ST $(cat rules.json)"
ST=$(admin_curl -s -o rules.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"rules":["secret. subscribe=ue:ue1,ue:ue2,as:* publish=as:as9","bad prefix!"]}' \
  "$M5S_ADMIN/admin/v1/topic-rules")
[[ $ST == 400 ]] && grep -qF 'topics.rules[1]' rules.json || m5s_fail "PUT a bad rule: $ST $(cat rules.json)"
m5c ue2 forb.out subscribe secret.plans # a refused PUT changed nothing
[[ $RC == 1 ]] || m5s_fail "ue2 subscribe secret.plans after a refused PUT: exit $RC"
ST=$(admin_curl -s -o rules.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"rules":["secret. subscribe=ue:ue1,ue:ue2,as:* publish=as:as9"]}' \
  "$M5S_ADMIN/admin/v1/topic-rules")
[[ $ST == 200 ]] || m5s_fail "PUT topic-rules: $ST $(cat rules.json)"
subscribe ue2 secret.plans
echo "ok: the rules are read and replaced on the admin API"


# ---- a re-bind drops the old subscriber's subscriptions --------------------------------------------
"$M5_BIN/m5ctl" subscriber add --supi "$SUPI1B" --kausf "$KAUSF1B" --ue-svc-id ue1 \
  --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" --pki "$M5_TMP/pki" >rebind.out 2>&1 ||
  m5s_fail "m5ctl subscriber add ue1 -> $SUPI1B: $(cat rebind.out)"
printf 'ue-svc-id: ue1\nsupi: "%s"\nkausf: "%s"\naf-fqdn: localhost\n' "$SUPI1B" "$KAUSF1B" \
  >"$M5_TMP/ue1.yaml"
publish ue3 t-5 meters.east
[[ $RC == 0 ]] || m5s_fail "ue3 -> topic after the re-bind: $(cat pub.out.err)"
wait_file_line "$M5S_LOG" 'MSG t-5 from ue3 to topic meters.east: no subscribers' 10 ||
  m5s_fail "t-5 was stored for someone after ue1's re-bind"
listen ue1 1 3 ue1c.out
[[ -z $(listen_id_set ue1c.out) ]] || m5s_fail "the re-bound ue1 got: $(cat ue1c.out)"
echo "ok: a re-bind drops the subscriptions"
# ---- an AS subscribes --------------------------------------------------------------------------
as_sub() { # BODY-TOPICS-JSON [SCOPE]: POST a subscription for as1 -> $ST, out.json, hdr.txt
  local tok=$TOKEN
  if [[ -n ${2:-} ]]; then
    nb /oauth2/token -d "grant_type=client_credentials&scope=$2"
    tok=$(json_get out.json access_token)
  fi
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -D hdr.txt -o out.json -w '%{http_code}' -H "authorization: Bearer $tok" \
    -H 'content-type: application/json' \
    -d "{\"asSvcId\":\"as1\",\"msgTopics\":$1}" \
    "https://localhost:$M5S_NORTH/msgs-topicsubscription/v1/subscriptions")
}
as_sub '["secret.plans"]' msgs-msgdelivery
[[ $ST == 403 ]] && grep -qi 'insufficient_scope' hdr.txt || m5s_fail "AS subscribe without msgs-topicsub: $ST"
as_sub '["secret.plans"]' msgs-topicsub # the rule lets as:* subscribe to secret.
[[ $ST == 201 ]] || m5s_fail "AS subscribe secret.plans: $ST $(cat out.json)"
as_sub '["bad name"]'
[[ $ST == 400 ]] || m5s_fail "AS subscribe with a bad name: $ST $(cat out.json)"
as_sub '["meters.east"]'
[[ $ST == 201 && $(json_get out.json expiry) == 20* ]] || m5s_fail "AS subscribe: $ST $(cat out.json)"
grep -qi "^location: https://localhost:$M5S_NORTH/msgs-topicsubscription/v1/subscriptions/meters.east" hdr.txt ||
  m5s_fail "AS subscribe: Location: $(cat hdr.txt)"
# as1 registers a targetUri on a stand-in AS (tests/interop/as_server.mjs), then ue3 publishes
AS_PORT=$(pick_port)
AS_LOG=$M5_TMP/as.log
: >"$AS_LOG"
echo 204 >"$M5_TMP/as.mode"
start_push_receiver tests/interop/as_server.mjs "$AS_PORT" "$AS_LOG" "$M5_TMP/as.mode" \
  "$M5_TMP/as_server.out"
ST=$(admin_curl -s -o as1.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d "{\"targets\":[\"localhost:$AS_PORT\"]}" "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 20? ]] || m5s_fail "PUT as-client as1 targets: $ST $(cat as1.json)"
nb /msgs-asregistration/v1/registrations -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d "{\"asSvcId\":\"as1\",\"targetUri\":\"https://localhost:$AS_PORT/as1\"}"
[[ $ST == 201 ]] || m5s_fail "AS registration: $ST $(cat out.json)"
publish ue3 t-as meters.east
[[ $RC == 0 ]] || m5s_fail "ue3 -> topic (t-as): $(cat pub.out.err)"
wait_file_line "$AS_LOG" 't-as' 15 || m5s_fail "as1 did not get t-as: $(cat "$AS_LOG")"
grep -q 'TOPIC.*meters.east.*"schema":"ok"' "$AS_LOG" || m5s_fail "as1's copy (TOPIC destAddr, TS 29.538 schema): $(cat "$AS_LOG")"
ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
  --key "$PKI/as1.key" -o out.json -w '%{http_code}' -X DELETE -H "authorization: Bearer $TOKEN" \
  "https://localhost:$M5S_NORTH/msgs-topicsubscription/v1/subscriptions/meters.east")
[[ $ST == 204 ]] || m5s_fail "AS unsubscribe: $ST $(cat out.json)"
publish ue3 t-as2 meters.east
wait_file_line "$M5S_LOG" 'MSG t-as2 from ue3 to topic meters.east: no subscribers' 10 ||
  m5s_fail "t-as2 was stored for someone after as1 unsubscribed"
# removing the AS client ends its subscriptions (a later AS client of that asSvcId starts clean)
as_sub '["meters.east"]'
[[ $ST == 201 ]] || m5s_fail "AS subscribe again: $ST $(cat out.json)"
ST=$(admin_curl -s -o del.json -w '%{http_code}' -X DELETE "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 204 ]] || m5s_fail "DELETE as-client as1: $ST $(cat del.json)"
ST=$(admin_curl -s -o as1.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d "{\"targets\":[\"localhost:$AS_PORT\"]}" "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 201 ]] || m5s_fail "PUT as-client as1 again: $ST $(cat as1.json)"
publish ue3 t-as3 meters.east
wait_file_line "$M5S_LOG" 'MSG t-as3 from ue3 to topic meters.east: no subscribers' 10 ||
  m5s_fail "t-as3 was stored for the removed AS client's subscription"
echo "ok: an AS subscribes and unsubscribes; removing its client ends its subscriptions"

# ---- the policy of who may message whom holds for the fan-out ------------------------------------
# as1 narrowed to ue2: publishing on a topic that ue1 and ue2 subscribed to reaches ue2 only
ST=$(admin_curl -s -o as1.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d "{\"targets\":[\"localhost:$AS_PORT\"],\"ueSvcIds\":[\"ue2\"]}" \
  "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 200 ]] || m5s_fail "PUT as-client as1 with ueSvcIds: $ST $(cat as1.json)"
subscribe ue1 policy.t
subscribe ue2 policy.t
as_token
as_publish p-1 policy.t
[[ $ST == 200 && -z $(json_get out.json status) ]] || m5s_fail "AS -> policy.t: $ST $(cat out.json)"
listen ue2 1 10 ue2p.out
[[ $(listen_id_set ue2p.out) == "p-1 " ]] || m5s_fail "ue2 did not get p-1: $(cat ue2p.out ue2p.out.err)"
listen ue1 1 3 ue1p.out
[[ -z $(listen_id_set ue1p.out) ]] ||
  m5s_fail "ue1, outside as1's ueSvcIds, got the topic message: $(cat ue1p.out)"
echo "ok: a topic's fan-out leaves out the subscribers the policy keeps from the publisher"
stop_m5s
echo "PASS test_m5s_topics"
