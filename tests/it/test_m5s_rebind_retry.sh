#!/usr/bin/env bash
# Integration: a re-bind the message store fails is retried while m5s runs, not only at the
# next start (docs/delivery.md "Re-bound UE Service IDs"). ue1 sends old-1 to ue2, offline,
# with --report --store-forward. m5s is stopped and a trigger put into the store that refuses
# every write of a binding generation while a message "rebind-block" is stored (as a full disk
# would refuse it); m5s starts again, ue1 sends rebind-block to ue3 (offline), and ue2 is
# re-bound to another SUPI by the admin API: the store's REBIND fails (the PUT is answered
# without failedDeliveries). Then ue3 comes online and gets rebind-block, which lifts the
# refusal: m5s's retry (a timer, no message from or to ue2 involved) gets the REBIND through,
# old-1 is failed, and ue1 gets its REPT_DELY_FAILED / RECIPIENT_REBOUND report.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3

make_pki
start_aanf
start_m5s
setup_ue ue1 001010000000921 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf21
setup_ue ue2 001010000000922 c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf22
setup_ue ue3 001010000000923 e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff23

ue_send() { # UE DEST ID [m5c send options]: the MSGRESP in send.out
  local ue=$1 to=$2 id=$3
  shift 3
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" send \
    --to "ue:$to" --msg-id "$id" --payload "hi $id" "$@" >send.out 2>&1 || true
  grep -q '"status":"DELY_STORED"' send.out || m5s_fail "m5c send $id: want DELY_STORED: $(cat send.out)"
}
ue_send ue1 ue2 old-1 --report --store-forward

block_rebind_while_stored

ue_send ue1 ue3 rebind-block --store-forward
st=$(admin_curl -s --max-time 10 -X PUT -H 'content-type: application/json' \
  --data-binary '{"supi":"001010000000929"}' -o put.out -w '%{http_code}' \
  "$M5S_ADMIN/admin/v1/bindings/ue2")
[[ $st == 200 ]] || m5s_fail "re-binding ue2: HTTP $st $(cat put.out)"
! grep -q failedDeliveries put.out || m5s_fail "the store's REBIND was not refused: $(cat put.out)"
wait_file_line "$M5S_LOG" 'ue2: the message store failed to start it clean .*retrying' 10 ||
  m5s_fail "no retry of the failed REBIND is planned"
echo "ok: the store refused ue2's REBIND; m5s plans a retry"

set +e
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue3.yaml" --server "$(m5c_uri tls)" listen \
  --count 1 --timeout 10 >listen3.out 2>listen3.err
rc=$?
set -e
[[ $rc == 0 ]] && grep -q '"msgId":"rebind-block"' listen3.out ||
  m5s_fail "ue3 listen: exit $rc: $(cat listen3.out listen3.err)"
wait_file_line "$M5S_LOG" 'ue2: 1 queued deliveries failed \(RECIPIENT_REBOUND\) \(retried\)' 40 ||
  m5s_fail "the REBIND was not retried once the store took it"
echo "ok: the retry got the REBIND through without a restart"

set +e
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 1 --timeout 10 >listen1.out 2>listen1.err
rc=$?
set -e
[[ $rc == 0 ]] || m5s_fail "ue1 listen: exit $rc: $(cat listen1.err)"
$PY - listen1.out <<'PYEOF' || m5s_fail "ue1 got: $(cat listen1.out)"
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert len(objs) == 1, objs
o = objs[0]
assert o.get("msgType") == "IMDN" and o.get("msgId") == "old-1", o
assert o.get("delivSt") == "REPT_DELY_FAILED" and o.get("failureCause") == "RECIPIENT_REBOUND", o
PYEOF
echo "ok: ue1 got the RECIPIENT_REBOUND report on old-1"
stop_m5s
