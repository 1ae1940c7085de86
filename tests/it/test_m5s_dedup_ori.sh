#!/usr/bin/env bash
# Integration: the store's dedup key is (originator, msgId), not msgId alone (docs/delivery.md).
# Two UEs and an Application Server send the same msgId to the same UE; none is a retransmission
# of another's:
#  - ue1 while ue3 listens: accepted for delivery (MSGRESP without status);
#  - ue2 while ue3 is away, store-and-forward: DELY_STORED (its own ack, not a repeat of ue1's);
#  - as1 (deliver-as-message, stoAndFwInd): 200 MessageDeliveryAck DELY_STORED, its own too;
#  - ue3 gets all three, one from each originator; the duplicates counter stays 0;
#  - and each sender's retransmission of that msgId IS a duplicate: answered with the sender's
#    own first ack, not delivered again (3 duplicates counted).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
start_m5s
setup_ue ue1 001010000000801 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
setup_ue ue2 001010000000802 c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0
setup_ue ue3 001010000000803 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
ID=same-id-1
admin_curl -sf -o /dev/null -X PUT -H 'content-type: application/json' -d '{"targets":["127.0.0.1:9"]}' \
  "$M5S_ADMIN/admin/v1/as-clients/as1"

send() { # UE OUT [options]: UE sends $ID to ue3 over TLS; the MSGRESP in OUT
  local ue=$1 out=$2
  shift 2
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" send \
    --to ue:ue3 --msg-id "$ID" --payload "from $ue" "$@" >"$out" 2>&1 ||
    m5s_fail "$ue: m5c send: $(cat "$out")"
  grep -q "\"msgType\":\"MSGRESP\".*\"msgId\":\"$ID\"" "$out" || m5s_fail "$ue: no MSGRESP: $(cat "$out")"
}
as_send() { # OUT: as1 sends $ID to ue3 (stoAndFwInd) -> $ST, the ack in OUT
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -o "$1" -w '%{http_code}' -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue3\"},\"msgId\":\"$ID\",\"payload\":\"ZnJvbSBhczE=\",\"stoAndFwInd\":true}" \
    "$NB/msgs-msgdelivery/v1/deliver-as-message")
}
duplicates() { curl -s "$M5S_ADMIN/admin/v1/stats" | sed -n 's/.*"duplicates":\([0-9]*\).*/\1/p'; }
TOKEN=$(curl -s --http2 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" --key "$PKI/as1.key" \
  -d grant_type=client_credentials "$NB/oauth2/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[[ -n $TOKEN ]] || m5s_fail "no token for as1"

# ue1 while ue3 listens: accepted for delivery, no status
m5c_listen_bg ue3 dtls listen1.out 1 30
send ue1 ue1.out
! grep -q '"status"' ue1.out || m5s_fail "ue1: want accepted for delivery: $(cat ue1.out)"
wait_pid_rc "$M5C_LISTEN_PID" 20
[[ $WAIT_RC == 0 ]] || m5s_fail "ue3 listen exited $WAIT_RC: $(cat listen1.out)"

# ue3 away: ue2 and as1 get their own DELY_STORED (a repeat of ue1's ack would have no status)
send ue2 ue2.out --store-forward
grep -q '"status":"DELY_STORED"' ue2.out || m5s_fail "ue2: want its own DELY_STORED: $(cat ue2.out)"
as_send as1.json
[[ $ST == 200 ]] || m5s_fail "as1: HTTP $ST $(cat as1.json)"
validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck as1.json
[[ $(json_get as1.json status) == DELY_STORED ]] || m5s_fail "as1: want its own DELY_STORED: $(cat as1.json)"
[[ $(duplicates) == 0 ]] || m5s_fail "a send of another originator counted as a duplicate: $(duplicates)"
echo "ok: the same msgId from ue1, ue2 and as1: three acks of their own"

# ue3 comes back: the two stored ones, from ue2 and as1
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue3.yaml" --server "$(m5c_uri dtls)" listen \
  --count 2 --timeout 15 >listen2.out 2>&1 || m5s_fail "ue3 listen: $(cat listen2.out)"
cat listen1.out listen2.out >got.out
for ori in '"addrType":"UE","addr":"ue1"' '"addrType":"UE","addr":"ue2"' '"addrType":"AS","addr":"as1"'; do
  [[ $(grep -c "\"msgType\":\"MSG\",\"oriAddr\":{$ori}.*\"msgId\":\"$ID\"" got.out) == 1 ]] ||
    m5s_fail "ue3 did not get $ID from {$ori} exactly once: $(cat got.out)"
done
echo "ok: ue3 got all three, one from each originator"

# each one's retransmission is a duplicate of its own: the same ack again, nothing delivered
send ue1 ue1-again.out
! grep -q '"status"' ue1-again.out || m5s_fail "ue1 again: want ue1's first ack: $(cat ue1-again.out)"
send ue2 ue2-again.out --store-forward
grep -q '"status":"DELY_STORED"' ue2-again.out || m5s_fail "ue2 again: $(cat ue2-again.out)"
as_send as1-again.json
[[ $ST == 200 && $(json_get as1-again.json status) == DELY_STORED ]] ||
  m5s_fail "as1 again: $ST $(cat as1-again.json)"
[[ $(duplicates) == 3 ]] || m5s_fail "three retransmissions: duplicates $(duplicates), want 3"
[[ $(curl -s "$M5S_ADMIN/admin/v1/stats" | sed -n 's/.*"messagesQueued":\([0-9]*\).*/\1/p') == 0 ]] ||
  m5s_fail "a retransmission was queued: $(curl -s "$M5S_ADMIN/admin/v1/stats")"
echo "ok: each originator's retransmission is its own duplicate"
stop_m5s
