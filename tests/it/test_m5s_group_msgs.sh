#!/usr/bin/env bash
# Integration: group and broadcast messages (TS 23.554 cl. 8.7.4, 8.6.1; docs/delivery.md
# "Groups and broadcast") against the real m5-aanf and m5s (2 workers), with m5c and an AS over
# the northbound API:
#  - a member (ue3) sends to group fleet (m5c send --to group:): the answer is a MSGRESP
#    without status; the live members ue1 and ue2 get it once each with "via" {GROUP, fleet},
#    the sender does not; the same msgId again is answered as before and delivered to nobody;
#  - a UE that is no member, a group that does not exist, and an AS without a grant get the same
#    refusal (DELY_FAILED NOT_AUTHORIZED / 403 NOT_AUTHORIZED); once granted, the AS's message
#    reaches the members, also the one that was away (stored, pushed at its REG);
#  - an empty group (and one whose only member is the sender): accepted, stored for nobody,
#    failureCause NO_MEMBERS in the answer;
#  - a member removed while a message is queued for it never gets it, and the sender gets the
#    failure report it asked for (RECIPIENT_LEFT_GROUP); a group deleted while a message is
#    queued: the same with GROUP_DELETED;
#  - the AS's ueSvcIds hold for its group messages (a member it may not message is left out);
#  - broadcast: only granted senders (an AS, a UE the operator names); members of the area get
#    it with "via" {BC, ...}, a member away gets it at its REG (stoAndFwInd), delivStReqInd is
#    ignored (no report); with broadcast.rate 1 a point-to-point message and a HIGH broadcast
#    overtake a LOW broadcast still being paced out.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
M5CTL="$M5_BIN/m5ctl"
make_pki
start_aanf
start_m5s "broadcast: {rate: 1}"
for i in 1 2 3 4 5; do
  setup_ue "ue$i" "00101000000200$i" "$(printf "%02d" "$i")$(printf 'ab%.0s' {1..31})"
done

ctl() { # ARGS...: m5ctl against this m5s; must succeed
  timeout 30 "$M5CTL" "$@" --m5s-admin "$M5S_ADMIN" --admin-token "$M5S_TOKEN_FILE" >ctl.out 2>&1 ||
    m5s_fail "m5ctl $*: $(cat ctl.out)"
}
m5c() { # UE OUT ARGS...: m5c over DTLS; exit status in RC
  local ue=$1 out=$2
  shift 2
  RC=0
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri dtls)" "$@" \
    >"$out" 2>"$out.err" || RC=$?
}
send() { # UE ID TO [ARGS]: the MSGRESP in send.out
  local ue=$1 id=$2 to=$3
  shift 3
  m5c "$ue" send.out send --to "$to" --payload "text of $id" --msg-id "$id" "$@"
}
accepted() { # WHAT [CAUSE]: send.out is a MSGRESP without status (with failureCause CAUSE)
  [[ $RC == 0 ]] && grep -q '"msgType":"MSGRESP"' send.out && ! grep -q '"status"' send.out ||
    m5s_fail "$1: want a MSGRESP without status: exit $RC $(cat send.out send.out.err)"
  if [[ -n ${2:-} ]]; then
    grep -q "\"failureCause\":\"$2\"" send.out || m5s_fail "$1: want failureCause $2: $(cat send.out)"
  else
    ! grep -q failureCause send.out || m5s_fail "$1: unexpected failureCause: $(cat send.out)"
  fi
}
refused() { # WHAT: send.out is DELY_FAILED NOT_AUTHORIZED
  [[ $RC == 1 ]] && grep -q '"status":"DELY_FAILED"' send.out &&
    grep -q '"failureCause":"NOT_AUTHORIZED"' send.out ||
    m5s_fail "$1: want DELY_FAILED NOT_AUTHORIZED: exit $RC $(cat send.out send.out.err)"
}
ids() { # OUT: "msgType:msgId" of what m5c listen printed, sorted, space-separated
  $PY -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{"):
        o = json.loads(l); print(o.get("msgType") + ":" + o.get("msgId"))' "$1" | sort | tr '\n' ' '
}
listen() { # UE COUNT SECONDS OUT: in the foreground; exit status in LISTEN_RC
  set +e
  timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/$1.yaml" --server "$(m5c_uri dtls)" listen \
    --count "$2" --timeout "$3" >"$4" 2>"$4.err"
  LISTEN_RC=$?
  set -e
}
listen_bg() { # UE COUNT SECONDS OUT: in the background (LPID), once m5s logged its REG
  m5c_listen_bg "$1" dtls "$4" "$2" "$3"
  LPID=$M5C_LISTEN_PID
}
queued() { admin_curl -s --max-time 5 "$M5S_ADMIN/admin/v1/stats" >stats.json && json_get stats.json messagesQueued; }

# ---- the AS as1 (token, registration without a targetUri) -------------------------------------
as1_client
as_send() { # ID TYPE ADDR [EXTRA JSON MEMBERS] -> $ST, out.json
  nb /msgs-msgdelivery/v1/deliver-as-message -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":\"$2\",\"addr\":\"$3\"},\"msgId\":\"$1\",\"payload\":\"aGk=\",\"stoAndFwInd\":true${4:-}}"
}

# ---- a member sends to its group ------------------------------------------------------------------
ctl group create fleet
for ue in ue1 ue2 ue3 ue4; do ctl group add fleet "ue:$ue"; done
listen_bg ue1 2 8 ue1.out
P1=$LPID
listen_bg ue2 2 8 ue2.out
P2=$LPID
send ue3 g-1 group:fleet --store-forward
accepted "ue3 -> group:fleet"
send ue3 g-1 group:fleet --store-forward # the same msgId: answered as before, stored once
accepted "ue3 -> group:fleet again"
wait_pid_rc "$P1" 30
[[ $WAIT_RC == 4 ]] || m5s_fail "ue1 listen: exit $WAIT_RC (want 4: one message, no second)"
wait_pid_rc "$P2" 30
[[ $WAIT_RC == 4 ]] || m5s_fail "ue2 listen: exit $WAIT_RC"
for ue in ue1 ue2; do
  [[ $(ids "$ue.out") == "MSG:g-1 " ]] || m5s_fail "$ue got '$(ids "$ue.out")', want g-1 once"
  grep -q '"via":{"addrType":"GROUP","addr":"fleet"}' "$ue.out" && grep -q '"oriAddr":{"addrType":"UE","addr":"ue3"}' "$ue.out" ||
    m5s_fail "$ue: want via GROUP fleet from ue3: $(cat "$ue.out")"
done
listen ue3 1 2 ue3.out
[[ -z $(ids ue3.out) ]] || m5s_fail "the sender ue3 got its own message: $(cat ue3.out)"
listen ue4 2 3 ue4.out # away when it was sent: stored (stoAndFwInd), pushed at its REG
[[ $(ids ue4.out) == "MSG:g-1 " ]] || m5s_fail "ue4 (away) got '$(ids ue4.out)', want g-1 once"
echo "ok: a member's message reaches every other member once, not the sender"

# ---- who may send: members and granted ASs; the same refusal for a group that does not exist ----
q0=$(queued)
send ue5 g-no-1 group:fleet --store-forward
refused "ue5 (no member) -> group:fleet"
send ue5 g-no-2 group:nosuch --store-forward
refused "ue5 -> group:nosuch"
as_send a-no-1 GROUP fleet
[[ $ST == 403 ]] && expect_problem out.json 403 NOT_AUTHORIZED || m5s_fail "as1 (no grant) -> fleet: $ST $(cat out.json)"
as_send a-no-2 GROUP nosuch
[[ $ST == 403 ]] && expect_problem out.json 403 NOT_AUTHORIZED || m5s_fail "as1 -> nosuch: $ST $(cat out.json)"
[[ $(queued) == "$q0" ]] || m5s_fail "a refused group message was stored: queued $(queued), was $q0"
ctl group grant fleet as:as1
listen_bg ue1 1 10 ue1b.out
P1=$LPID
as_send a-1 GROUP fleet
[[ $ST == 200 && -z $(json_get out.json status) ]] || m5s_fail "as1 (granted) -> fleet: $ST $(cat out.json)"
validate_sent TS29538_MSGS_MSGDelivery.yaml MessageDeliveryAck out.json
wait_pid_rc "$P1" 30
[[ $WAIT_RC == 0 && $(ids ue1b.out) == "MSG:a-1 " ]] || m5s_fail "ue1 did not get a-1: $(cat ue1b.out ue1b.out.err)"
for ue in ue2 ue3 ue4; do
  listen "$ue" 1 5 "$ue.a.out"
  [[ $(ids "$ue.a.out") == "MSG:a-1 " ]] || m5s_fail "$ue got '$(ids "$ue.a.out")', want a-1"
done
echo "ok: only members and granted ASs may send; an unknown group gets the same NOT_AUTHORIZED"

# ---- an empty group, and one whose only member is the sender ---------------------------------------
ctl group create empty
ctl group grant empty as:as1
as_send a-empty GROUP empty
[[ $ST == 200 && -z $(json_get out.json status) && $(json_get out.json failureCause) == NO_MEMBERS ]] ||
  m5s_fail "as1 -> the empty group: $ST $(cat out.json)"
ctl group create solo
ctl group add solo ue:ue1
send ue1 g-solo group:solo
accepted "ue1 -> group:solo (only itself)" NO_MEMBERS
echo "ok: an empty group: accepted, stored for nobody, NO_MEMBERS"

# ---- a member removed, a group deleted, while a message is queued for it ---------------------------
ctl group create crew
for ue in ue1 ue2 ue3; do ctl group add crew "ue:$ue"; done
send ue3 g-left group:crew --store-forward --report # ue1 and ue2 are away: queued
accepted "ue3 -> group:crew"
ctl group remove crew ue:ue2
listen ue3 1 10 ue3.rep.out
[[ $LISTEN_RC == 0 ]] || m5s_fail "ue3: no failure report for ue2: $(cat ue3.rep.out ue3.rep.out.err)"
$PY - ue3.rep.out <<'EOF' || m5s_fail "ue3's report on g-left: $(cat ue3.rep.out)"
import json, sys
o = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][0]
assert o["msgType"] == "IMDN" and o["msgId"] == "g-left", o
assert o["delivSt"] == "REPT_DELY_FAILED" and o["failureCause"] == "RECIPIENT_LEFT_GROUP", o
assert o["oriAddr"]["addr"] == "ue2", o
EOF
listen ue2 1 3 ue2.left.out
[[ -z $(ids ue2.left.out) ]] || m5s_fail "ue2 got a message of a group it left: $(cat ue2.left.out)"
ctl group add crew ue:ue2 # back in: still not for what was sent before
listen ue2 1 3 ue2.back.out
[[ -z $(ids ue2.back.out) ]] || m5s_fail "ue2, added again, got an older message: $(cat ue2.back.out)"
ctl group delete crew
listen ue3 1 10 ue3.del.out
grep -q '"failureCause":"GROUP_DELETED"' ue3.del.out && grep -q '"oriAddr":{"addrType":"UE","addr":"ue1"}' ue3.del.out ||
  m5s_fail "ue3: want the GROUP_DELETED report for ue1: $(cat ue3.del.out ue3.del.out.err)"
listen ue1 1 3 ue1.del.out
[[ -z $(ids ue1.del.out) ]] || m5s_fail "ue1 got a message of a deleted group: $(cat ue1.del.out)"
echo "ok: a member removed or a group deleted: queued messages fail with the report asked for"

# ---- the AS's ueSvcIds hold for its group messages ---------------------------------------------------
ST=$(admin_curl -s -o as1.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"targets":["127.0.0.1:9"],"ueSvcIds":["ue1"]}' "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 200 ]] || m5s_fail "PUT as-client as1 with ueSvcIds: $ST $(cat as1.json)"
as_send a-narrow GROUP fleet
[[ $ST == 200 && -z $(json_get out.json status) ]] || m5s_fail "as1 (narrowed) -> fleet: $ST $(cat out.json)"
listen ue1 1 5 ue1.n.out
[[ $(ids ue1.n.out) == "MSG:a-narrow " ]] || m5s_fail "ue1 did not get a-narrow: $(cat ue1.n.out)"
listen ue2 1 3 ue2.n.out
[[ -z $(ids ue2.n.out) ]] || m5s_fail "ue2 got a-narrow though as1 may message ue1 only: $(cat ue2.n.out)"
ST=$(admin_curl -s -o as1.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"targets":["127.0.0.1:9"],"ueSvcIds":["*"]}' "$M5S_ADMIN/admin/v1/as-clients/as1")
echo "ok: a group message reaches only the members its sender may message"

# ---- broadcast -----------------------------------------------------------------------------------
ctl area create north
for ue in ue1 ue2 ue3 ue4; do ctl area add north "ue:$ue"; done
send ue1 b-no bc:north --store-forward # a member, but not granted
refused "ue1 (not granted) -> bc:north"
as_send b-no-as BC north
[[ $ST == 403 ]] && expect_problem out.json 403 NOT_AUTHORIZED || m5s_fail "as1 (no grant) -> bc:north: $ST $(cat out.json)"
ctl area grant north as:as1
ctl area grant north ue:ue5
listen_bg ue1 1 10 ue1.bc.out
P1=$LPID
send ue5 b-1 bc:north --store-forward --report
accepted "ue5 (granted) -> bc:north"
wait_pid_rc "$P1" 30
[[ $WAIT_RC == 0 && $(ids ue1.bc.out) == "MSG:b-1 " ]] || m5s_fail "ue1 did not get b-1: $(cat ue1.bc.out ue1.bc.out.err)"
grep -q '"via":{"addrType":"BC","addr":"north"}' ue1.bc.out || m5s_fail "ue1: no via BC north: $(cat ue1.bc.out)"
grep -q '"delivStReqInd":true' ue1.bc.out && m5s_fail "a broadcast asked a member for a report: $(cat ue1.bc.out)"
for ue in ue2 ue3 ue4; do # away when sent: pushed at its REG
  listen "$ue" 1 10 "$ue.bc.out"
  [[ $(ids "$ue.bc.out") == "MSG:b-1 " ]] || m5s_fail "$ue (away) did not get b-1: $(cat "$ue.bc.out")"
done
listen ue5 1 3 ue5.bc.out
[[ -z $(ids ue5.bc.out) ]] || m5s_fail "ue5 got a report of a broadcast (delivStReqInd is ignored): $(cat ue5.bc.out)"
echo "ok: broadcast from granted senders to the area's members, away ones included"

# Pacing (broadcast.rate 1): a LOW broadcast to the live ue1..ue4 goes out one member a second
# (ue1 first: members in order); a HIGH broadcast and a point-to-point message sent right after
# it reach ue4 before the LOW one does.
PIDS=()
for ue in ue1 ue2 ue3; do
  listen_bg "$ue" 2 40 "$ue.pace.out"
  PIDS+=("$LPID")
done
listen_bg ue4 3 40 ue4.bc.out
P4=$LPID
as_send b-low BC north ',"priority":"LOW"'
[[ $ST == 200 ]] || m5s_fail "as1 -> bc:north LOW: $ST $(cat out.json)"
as_send b-high BC north ',"priority":"HIGH"'
[[ $ST == 200 ]] || m5s_fail "as1 -> bc:north HIGH: $ST $(cat out.json)"
send ue5 p-1 ue:ue4
[[ $RC == 0 ]] || m5s_fail "ue5 -> ue4: $(cat send.out send.out.err)"
wait_pid_rc "$P4" 60
[[ $WAIT_RC == 0 ]] || m5s_fail "ue4 listen: exit $WAIT_RC $(cat ue4.bc.out.err)"
order=$($PY -c 'import json,sys
print(" ".join(json.loads(l)["msgId"] for l in open(sys.argv[1]) if l.startswith("{")))' ue4.bc.out)
[[ $order == "p-1 b-high b-low" || $order == "b-high p-1 b-low" ]] ||
  m5s_fail "ue4 got '$order': the paced LOW broadcast should come last"
for p in "${PIDS[@]}"; do
  wait_pid_rc "$p" 60
  [[ $WAIT_RC == 0 ]] || m5s_fail "a member did not get both broadcasts (exit $WAIT_RC)"
done
echo "ok: broadcasts are paced, HIGH before LOW, and point-to-point traffic is not held back"

# A member removed while its delivery waits in the pacer (in flight in the store, so no sweep
# touches it): the check before the push keeps it from the member.
PIDS=()
for ue in ue1 ue2 ue3; do
  listen_bg "$ue" 1 20 "$ue.rm.out"
  PIDS+=("$LPID")
done
listen_bg ue4 1 8 ue4.rm.out
P4=$LPID
as_send b-rm BC north ',"priority":"LOW"'
[[ $ST == 200 ]] || m5s_fail "as1 -> bc:north (b-rm): $ST $(cat out.json)"
ctl area remove north ue:ue4
wait_pid_rc "$P4" 30
[[ $WAIT_RC == 4 && -z $(ids ue4.rm.out) ]] || m5s_fail "ue4, removed, got b-rm: $(cat ue4.rm.out)"
for p in "${PIDS[@]}"; do
  wait_pid_rc "$p" 30
  [[ $WAIT_RC == 0 ]] || m5s_fail "a member did not get b-rm (exit $WAIT_RC)"
done
grep -q 'MSG b-rm to BC north: not pushed to UE:ue4 (RECIPIENT_LEFT_GROUP)' "$M5S_LOG" ||
  m5s_fail "no log of the check that kept b-rm from ue4"
echo "ok: a member removed while its broadcast delivery waits in the pacer does not get it"
