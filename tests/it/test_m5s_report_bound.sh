#!/usr/bin/env bash
# Integration: a delivery report is not refused because its recipient's queue is full
# (docs/store.md "Limits", docs/delivery.md "Reports"). store.max_per_recipient 4 (and a
# sender's share of a queue 4). ue1 sends r-1 and r-2 to ue2, offline, with --report and
# --store-forward (DELY_STORED); ue3 fills ue1's queue with 4 messages (a fifth gets
# DELY_FAILED / QUEUE_FULL); then ue2 comes online (m5c listen), gets r-1 and r-2 and answers
# each with an IMDN. Those reports are stored for ue1 (they have their own bound,
# store.max_reports_per_recipient, and are charged to nobody's quota): m5s logs no "queue is
# full" for them, and ue1, once online, gets its 4 messages and both reports from ue2.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3

make_pki
start_aanf
start_m5s "store: {max_per_recipient: 4, max_per_recipient_per_originator: 4}"
setup_ue ue1 001010000000911 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf11
setup_ue ue2 001010000000912 c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf12
setup_ue ue3 001010000000913 e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff13

ue_send() { # UE DEST ID [m5c send options]: the MSGRESP in send.out
  local ue=$1 to=$2 id=$3
  shift 3
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" send \
    --to "ue:$to" --msg-id "$id" --payload "hi $id" "$@" >send.out 2>&1 || true
  grep -q '"msgType":"MSGRESP"' send.out || m5s_fail "m5c send $id: no MSGRESP: $(cat send.out)"
}
want_stored() { grep -q '"status":"DELY_STORED"' send.out || m5s_fail "$1: want DELY_STORED: $(cat send.out)"; }

ue_send ue1 ue2 r-1 --report --store-forward && want_stored r-1
ue_send ue1 ue2 r-2 --report --store-forward && want_stored r-2
for i in 1 2 3 4; do
  ue_send ue3 ue1 "f-$i" --store-forward && want_stored "f-$i"
done
ue_send ue3 ue1 f-5 --store-forward
grep -q '"failureCause":"QUEUE_FULL"' send.out || m5s_fail "f-5: want QUEUE_FULL: $(cat send.out)"
echo "ok: ue1's queue is full (4 of 4)"

set +e
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" listen \
  --count 2 --timeout 10 >listen2.out 2>listen2.err
rc=$?
set -e
[[ $rc == 0 ]] || m5s_fail "ue2 listen --count 2: exit $rc: $(cat listen2.err)"
set +e
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" listen \
  --count 6 --timeout 10 >listen1.out 2>listen1.err
rc=$?
set -e
(($(m5s_log_count 'IMDN r-[12] from ue2 .*queue is full') == 0)) ||
  m5s_fail "an IMDN was refused for ue1's full queue"
[[ $rc == 0 ]] || m5s_fail "ue1 listen --count 6: exit $rc: $(cat listen1.out listen1.err)"
$PY - listen1.out <<'PYEOF' || m5s_fail "ue1 got: $(cat listen1.out)"
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
msgs = sorted(o["msgId"] for o in objs if o.get("msgType") == "MSG")
reps = sorted(o["msgId"] for o in objs if o.get("msgType") == "IMDN")
assert msgs == ["f-1", "f-2", "f-3", "f-4"], msgs
assert reps == ["r-1", "r-2"], reps
for o in objs:
    if o.get("msgType") == "IMDN":
        assert o["oriAddr"]["addr"] == "ue2" and o["destAddr"]["addr"] == "ue1", o
        assert o.get("delivSt", "").startswith("REPT_"), o
PYEOF
echo "ok: ue2's reports reach ue1 although ue1's queue was full"
stop_m5s
