#!/usr/bin/env bash
# Integration: removing an AS client whose Messaging Topic subscriptions cannot be dropped (a
# failing store, simulated by a test hook) must not leave them to a later client of the same
# asSvcId: the DELETE is answered 500 ("DELETE it again"), the repeated DELETE drops them and
# answers 404, and a message to the topic then reaches nobody.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
use_test_hooks
start_m5s
setup_ue ue1 001010000004001 4141414141414141414141414141414141414141414141414141414141414141
put_as1() {
  ST=$(admin_curl -s -o as1.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
    -d '{"targets":["127.0.0.1:9"]}' "$M5S_ADMIN/admin/v1/as-clients/as1")
}
del_as1() { ST=$(admin_curl -s -o del.json -w '%{http_code}' -X DELETE "$M5S_ADMIN/admin/v1/as-clients/as1"); }
as1_client
nb /msgs-topicsubscription/v1/subscriptions -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"asSvcId":"as1","msgTopics":["alerts"]}'
[[ $ST == 201 ]] || m5s_fail "as1 subscribes to alerts: $ST $(cat out.json)"

touch "$HOOKS/fail-as-topics-drop"
del_as1
[[ $ST == 500 ]] && grep -q 'DELETE it again' del.json || m5s_fail "DELETE with a failing drop: $ST $(cat del.json)"
rm -f "$HOOKS/fail-as-topics-drop"
del_as1
[[ $ST == 404 ]] || m5s_fail "the repeated DELETE: $ST $(cat del.json)"
put_as1
[[ $ST == 201 ]] || m5s_fail "PUT as-client as1 again: $ST $(cat as1.json)"
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri dtls)" send \
  --to topic:alerts --payload hi --msg-id t-after --store-forward >send.out 2>&1 ||
  m5s_fail "ue1 -> topic:alerts: $(cat send.out)"
wait_file_line "$M5S_LOG" 'MSG t-after from ue1 to topic alerts: no subscribers' 10 ||
  m5s_fail "the re-created as1 inherited the removed client's subscription"
echo "ok: a failed drop of a removed AS client's subscriptions is answered 500 and a DELETE again drops them"
