#!/usr/bin/env bash
# Integration: a group member removed, and m5s killed (kill -9) after the registry committed the
# removal and before the message store failed the member's queued deliveries (docs/delivery.md
# "Groups and broadcast": the two databases cannot commit together). At the next start m5s
# sweeps every group message before it serves anyone: the removed member never gets the queued
# message, and its sender gets the RECIPIENT_LEFT_GROUP report it asked for; a member still in
# the group gets the message.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
M5CTL="$M5_BIN/m5ctl"
make_pki
start_aanf
use_test_hooks
start_m5s
setup_ue ue1 001010000003001 3131313131313131313131313131313131313131313131313131313131313131
setup_ue ue2 001010000003002 3232323232323232323232323232323232323232323232323232323232323232
setup_ue ue3 001010000003003 3333333333333333333333333333333333333333333333333333333333333333

ctl() {
  timeout 30 "$M5CTL" "$@" --m5s-admin "$M5S_ADMIN" --admin-token "$M5S_TOKEN_FILE" >ctl.out 2>&1 ||
    m5s_fail "m5ctl $*: $(cat ctl.out)"
}
m5c() { # UE OUT ARGS...: exit status in RC
  local ue=$1 out=$2
  shift 2
  RC=0
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri dtls)" "$@" \
    >"$out" 2>"$out.err" || RC=$?
}

ctl group create crew
for ue in ue1 ue2 ue3; do ctl group add crew "ue:$ue"; done
m5c ue1 send.out send --to group:crew --payload hello --msg-id g-crash --store-forward --report
[[ $RC == 0 ]] && ! grep -q '"status"' send.out || m5s_fail "ue1 -> group:crew: $(cat send.out send.out.err)"

touch "$HOOKS/hold-group-sweep"
ctl group remove crew ue:ue2
for ((i = 0; i < 100; i++)); do [[ -e $HOOKS/hold-group-sweep.reached ]] && break; sleep 0.1; done
[[ -e $HOOKS/hold-group-sweep.reached ]] || m5s_fail "the removal's sweep did not reach the hook"
kill -KILL "$M5S_PID"
wait "$M5S_PID" 2>/dev/null || true
rm -f "$HOOKS/hold-group-sweep"
start_m5s
grep -q '1 queued deliveries of group or broadcast messages failed at start-up' "$M5S_LOG" ||
  m5s_fail "the store did not catch up with the removal at start-up"

m5c ue1 ue1.out listen --count 1 --timeout 10
[[ $RC == 0 ]] || m5s_fail "ue1: no report after the restart: $(cat ue1.out ue1.out.err)"
$PY - ue1.out <<'PYEOF' || m5s_fail "ue1's report: $(cat ue1.out)"
import json, sys
o = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][0]
assert o["msgType"] == "IMDN" and o["msgId"] == "g-crash", o
assert o["delivSt"] == "REPT_DELY_FAILED" and o["failureCause"] == "RECIPIENT_LEFT_GROUP", o
assert o["oriAddr"]["addr"] == "ue2", o
PYEOF
m5c ue2 ue2.out listen --count 1 --timeout 3
! grep -q '"msgId":"g-crash"' ue2.out || m5s_fail "ue2, removed before the crash, got g-crash"
m5c ue3 ue3.out listen --count 1 --timeout 10
grep -q '"msgId":"g-crash"' ue3.out || m5s_fail "ue3, still a member, did not get g-crash: $(cat ue3.out ue3.out.err)"
echo "ok: a removal whose sweep a crash interrupted is caught up at start-up, with its report"
