#!/usr/bin/env bash
# Integration: groups and broadcast areas shared by two m5s nodes through NATS KV (store.backend
# jetstream; issue 13 "groups ... are cluster-wide", docs/scale-out.md). Real nats-server (one,
# replicas 1), m5-aanf, two m5s (nodes a and b: own ports and SQLite files, one PKI, one admin
# token file), m5c:
#  - a group created and its members added through node a's admin API are visible on node b
#    (its members, its grants), and so is an area;
#  - a group message sent through node b reaches the members whose sessions are on node a and
#    on node b, each once (the member on a is routed to a's subjects: a pushes it);
#  - a member removed through node b's admin API is gone on node a too, and a group message sent
#    through node a no longer reaches it (while the other member still gets it);
#  - a group deleted on node a is gone on node b.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$M5_SRC/tests/nats_lib.bash"
source "$M5_SRC/tests/cluster_lib.bash"

make_pki
start_aanf
start_two_nodes m5gr

address a
for i in 1 2 3; do
  setup_ue "ue$i" "00101000000930$i" "$(printf "%02d" "$i")$(printf 'cd%.0s' {1..31})"
done

ctl_on() { # NODE ARGS...: m5ctl against that node; must succeed
  local n=$1
  shift
  address "$n"
  timeout 30 "$M5_BIN/m5ctl" "$@" --m5s-admin "$M5S_ADMIN" --admin-token "$M5S_TOKEN_FILE" \
    >ctl.out 2>&1 || m5s_fail "m5ctl $* on node $n: $(cat ctl.out)"
}
get_on() { # NODE PATH: GET on that node's management API into get.json; the status in ST
  address "$1"
  ST=$(admin_curl -s -o get.json -w '%{http_code}' --max-time 10 "$M5S_ADMIN/admin/v1/$2")
}
# until_on NODE PATH STATUS [BODY]: polls (bounded: 15 s) until GET PATH on NODE answers STATUS
# (and, when given, exactly BODY): another node's write reaches this one through its watcher.
until_on() {
  local i
  for ((i = 0; i < 150; i++)); do
    get_on "$1" "$2"
    [[ $ST == "$3" && (-z ${4:-} || $(<get.json) == "$4") ]] && return 0
    sleep 0.1
  done
  m5s_fail "node $1: GET $2 answers $ST $(cat get.json), want $3 ${4:-}"
}
send_on() { # NODE UE ID TO: m5c sends over TLS through NODE; the MSGRESP in send.out
  address "$1"
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$2.yaml" --server "$(m5c_uri tls)" send --to "$4" \
    --payload "text of $3" --msg-id "$3" >send.out 2>&1 ||
    m5s_fail "$2's send $3 through node $1: $(cat send.out)"
  grep -q '"msgType":"MSGRESP"' send.out && ! grep -q '"status"' send.out ||
    m5s_fail "$2's send $3 through node $1: want a MSGRESP without status: $(cat send.out)"
}
ids() { # OUT: "msgType:msgId" of what m5c listen printed, sorted, space-separated
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{"):
        o = json.loads(l); print(o.get("msgType") + ":" + o.get("msgId"))' "$1" | sort | tr '\n' ' '
}

echo "=== a group and an area made through node a are visible on node b"
ctl_on a group create fleet
for ue in ue1 ue2 ue3; do ctl_on a group add fleet "ue:$ue"; done
ctl_on a group grant fleet ue:ue3
ctl_on a area create north
ctl_on a area add north ue:ue1
until_on b groups/fleet/members 200 '["ue:ue1","ue:ue2","ue:ue3"]'
get_on b groups/fleet
[[ $ST == 200 ]] && grep -q '"principal":"ue:ue3"' get.json ||
  m5s_fail "node b: the grant made on node a is missing: $ST $(cat get.json)"
until_on b areas/north/members 200 '["ue:ue1"]'

echo "=== a group message through node b reaches members on node a and on node b"
address a
m5c_listen_bg ue1 tls ue1.out 2 15
P1=$M5C_LISTEN_PID
address b
m5c_listen_bg ue2 tls ue2.out 2 15
P2=$M5C_LISTEN_PID
send_on b ue3 cg-1 group:fleet
wait_pid_rc "$P1" 40
[[ $WAIT_RC == 4 ]] || m5s_fail "ue1 (on node a): exit $WAIT_RC (want 4: one message, no second): $(cat ue1.out)"
wait_pid_rc "$P2" 40
[[ $WAIT_RC == 4 ]] || m5s_fail "ue2 (on node b): exit $WAIT_RC (want 4: one message, no second): $(cat ue2.out)"
for ue in ue1 ue2; do
  [[ $(ids "$ue.out") == "MSG:cg-1 " ]] || fail "$ue got '$(ids "$ue.out")', want cg-1 once"
  grep -q '"via":{"addrType":"GROUP","addr":"fleet"}' "$ue.out" || fail "$ue: want via GROUP fleet: $(cat "$ue.out")"
done

echo "=== a member removed on node b gets nothing more through node a"
ctl_on b group remove fleet ue:ue1
until_on a groups/fleet/members 200 '["ue:ue2","ue:ue3"]'
address a
m5c_listen_bg ue1 tls ue1b.out 2 8
P1=$M5C_LISTEN_PID
address b
m5c_listen_bg ue2 tls ue2b.out 1 30
P2=$M5C_LISTEN_PID
send_on a ue3 cg-2 group:fleet
send_on a ue3 cg-3 ue:ue1 # a direct one: ue1's session works and hears only this
wait_pid_rc "$P2" 40
[[ $WAIT_RC == 0 ]] || m5s_fail "ue2 (on node b) did not get cg-2: exit $WAIT_RC $(cat ue2b.out)"
[[ $(ids ue2b.out) == "MSG:cg-2 " ]] || fail "ue2 got '$(ids ue2b.out)', want cg-2"
wait_pid_rc "$P1" 40
[[ $(ids ue1b.out) == "MSG:cg-3 " ]] ||
  fail "ue1, removed from fleet on node b, got '$(ids ue1b.out)' through node a, want only cg-3"

echo "=== a group deleted on node a is gone on node b"
ctl_on a group delete fleet
until_on b groups/fleet 404

stop_two_nodes
echo PASS
