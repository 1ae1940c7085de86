#!/usr/bin/env bash
# Integration: routing between two m5s nodes sharing a NATS JetStream store and registry
# (store.backend jetstream; issue 13 "Routing between nodes", docs/scale-out.md). Real
# nats-server (one, replicas 1), m5-aanf, two m5s (nodes a and b: own ports and SQLite files,
# one PKI, one admin token file), m5c:
#  - ue2 listens on node b, ue1 sends on node a: a accepts it for delivery (no DELY_STORED: the
#    registration names node b) and queues it on b's subjects, b pushes it to ue2;
#  - a UE moving between nodes while messages are queued for it: ue2 leaves b, ue1 sends three
#    more (HIGH last) through a, each queued on b; ue2 registers on node a, whose DUE moves its
#    queue over from b's subjects: ue2 receives all three there, the HIGH one first, each once;
#  - node b's /metrics show the JetStream store connected.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$M5_SRC/tests/nats_lib.bash"
source "$M5_SRC/tests/cluster_lib.bash"

SUPI1=001010000000921
KAUSF1=2121212121212121212121212121212121212121212121212121212121212121
SUPI2=001010000000922
KAUSF2=2222222222222222222222222222222222222222222222222222222222222222

make_pki
start_aanf
start_two_nodes m5rt

# send_on NODE MSGID PRIO TEXT OUT [OPTION...]: ue1 sends to ue2 through NODE over TLS.
send_on() {
  address "$1"
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" \
    send --to ue:ue2 --msg-id "$2" --priority "$3" --payload "$4" "${@:6}" >"$5" 2>&1 ||
    m5s_fail "ue1's send $2 through node $1: $(cat "$5")"
}

# ids OUT: the msgIds a listener printed, in order, one per line.
ids() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    l = l.strip()
    if l.startswith("{"): print(json.loads(l).get("msgId", ""))' "$1"; }

address a
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"

echo "=== ue2 on node b, ue1 sends through node a"
address b
m5c_listen_bg ue2 tls listen-b.out 1 60
L=$M5C_LISTEN_PID
send_on a rt-1 middle 'from a to b' send1.out
grep -q 'DELY_STORED' send1.out && m5s_fail "a stored it for later although ue2 is on b: $(cat send1.out)"
wait_pid_rc "$L" 60
[[ $WAIT_RC == 0 ]] || fail "ue2 on node b did not receive rt-1 (rc $WAIT_RC): $(cat listen-b.out)"
[[ $(ids listen-b.out) == rt-1 ]] || fail "ue2 on b: $(cat listen-b.out)"
grep -q 'from a to b' listen-b.out || fail "ue2 on b: wrong payload: $(cat listen-b.out)"

echo "=== ue2 moves from node b to node a while three messages are queued for it"
# With store-and-forward: ue2 is registered on b but has no session there now, so without it b
# would fail them (RECIPIENT_UNREACHABLE) at its next back-off tick, before ue2's REG on a moves
# them whenever that REG comes later than the tick (seen under load).
send_on a rt-2 low 'queued 1' send2.out --store-forward
send_on a rt-3 middle 'queued 2' send3.out --store-forward
send_on a rt-4 high 'queued 3' send4.out --store-forward
address a
m5c_listen_bg ue2 tls listen-a.out 3 60
L=$M5C_LISTEN_PID
wait_pid_rc "$L" 60
[[ $WAIT_RC == 0 ]] || fail "ue2 on node a did not receive its queue (rc $WAIT_RC): $(cat listen-a.out)"
got=$(ids listen-a.out | tr '\n' ' ')
[[ $got == "rt-4 rt-3 rt-2 " ]] || fail "ue2 on a got '$got', want 'rt-4 rt-3 rt-2 ' (priority order, each once)"

echo "=== node b's store is connected"
curl -s --max-time 10 "$B_ADMIN/metrics" | grep -q '^msgin5g_store_js_connected 1' ||
  fail "node b: msgin5g_store_js_connected is not 1"

stop_two_nodes
echo PASS
