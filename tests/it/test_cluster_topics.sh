#!/usr/bin/env bash
# Integration: Messaging Topic subscriptions shared by two m5s nodes on one NATS JetStream
# (store.backend jetstream: KV bucket <prefix>_topics, a copy per node filled by a watcher;
# js_topics.c, docs/scale-out.md; issue 13 "subscriptions ... are cluster-wide"). Real
# nats-server (one, replicas 1), m5-aanf, two m5s (nodes a and b), m5c:
#  - ue3 subscribes through node b, then ue2 through node a; ue2 listens on a, ue3 on b; ue1
#    publishes to the topic through node a: both get the message once (ue3's is queued on b's
#    subjects, due at once there, and b pushes it);
#  - ue3 unsubscribes through node b; ue1 publishes again through node a (store and forward):
#    ue2 gets it, and ue3, listening again, gets nothing (a left it out: nothing was queued).
# No waiting for node a's copy: a write through a is answered once a's watcher applied it, and
# the watcher applies the bucket in revision order, so after ue2's subscription (or renewal)
# through a, a's copy holds every change b made before.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$M5_SRC/tests/nats_lib.bash"
source "$M5_SRC/tests/cluster_lib.bash"

make_pki
start_aanf
start_two_nodes m5tp
address a
setup_ue ue1 001010000000931 3131313131313131313131313131313131313131313131313131313131313131
setup_ue ue2 001010000000932 3232323232323232323232323232323232323232323232323232323232323232
setup_ue ue3 001010000000933 3333333333333333333333333333333333333333333333333333333333333333

# m5c NODE UE OUT CMD ARGS...: m5c over TLS through NODE; stdout in OUT, stderr in OUT.err.
m5c() {
  local ue=$2 out=$3
  address "$1"
  shift 3
  RC=0
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" "$@" \
    >"$out" 2>"$out.err" || RC=$?
}
subscribe() { # NODE UE TOPIC: must succeed
  m5c "$1" "$2" sub.out subscribe "$3"
  [[ $RC == 0 ]] || m5s_fail "$2 subscribe $3 through node $1: exit $RC: $(cat sub.out.err)"
  grep -q "\"msgType\":\"TOPICSUB\",\"msgTopics\":\[\"$3\"\]" sub.out ||
    m5s_fail "$2 subscribe $3 through node $1: answer $(cat sub.out)"
}
publish() { # ID: ue1 sends to topic meters.north through node a, store and forward
  m5c a ue1 pub.out send --to topic:meters.north --payload "text of $1" --msg-id "$1" \
    --store-forward
  [[ $RC == 0 ]] || m5s_fail "ue1 -> topic through node a: exit $RC: $(cat pub.out.err)"
  grep -q "\"msgId\":\"$1\"" pub.out && ! grep -q '"status"' pub.out ||
    m5s_fail "ue1 -> topic: want a MSGRESP without status: $(cat pub.out)"
}

echo "=== ue3 subscribes on node b, ue2 on node a; one message from ue1 through a reaches both"
subscribe b ue3 meters.north
subscribe a ue2 meters.north
address a
m5c_listen_bg ue2 tls ue2-1.out 1 60
P2=$M5C_LISTEN_PID
address b
m5c_listen_bg ue3 tls ue3-1.out 1 60
P3=$M5C_LISTEN_PID
publish tp-1
wait_pid_rc "$P2" 60
[[ $WAIT_RC == 0 ]] || fail "ue2 on node a did not get tp-1 (rc $WAIT_RC): $(cat ue2-1.out)"
wait_pid_rc "$P3" 60
[[ $WAIT_RC == 0 ]] || fail "ue3 on node b did not get tp-1 (rc $WAIT_RC): $(cat ue3-1.out)"
[[ $(listen_ids ue2-1.out) == tp-1 ]] || fail "ue2: $(cat ue2-1.out)"
[[ $(listen_ids ue3-1.out) == tp-1 ]] || fail "ue3: $(cat ue3-1.out)"
grep -q '"TOPIC"' ue3-1.out && grep -q 'meters.north' ue3-1.out ||
  fail "ue3's message does not say it came through the topic: $(cat ue3-1.out)"

echo "=== ue3 unsubscribes on node b; the next message through a reaches ue2 only"
m5c b ue3 unsub.out unsubscribe meters.north
[[ $RC == 0 ]] || m5s_fail "ue3 unsubscribe through node b: exit $RC: $(cat unsub.out.err)"
subscribe a ue2 meters.north # a renewal through a: a's copy is past b's delete (above)
publish tp-2
address a
m5c_listen_bg ue2 tls ue2-2.out 1 60
wait_pid_rc "$M5C_LISTEN_PID" 60
[[ $WAIT_RC == 0 ]] || fail "ue2 on node a did not get tp-2 (rc $WAIT_RC): $(cat ue2-2.out)"
[[ $(listen_ids ue2-2.out) == tp-2 ]] || fail "ue2: $(cat ue2-2.out)"
address b
m5c_listen_bg ue3 tls ue3-2.out 1 5
wait_pid_rc "$M5C_LISTEN_PID" 30
[[ -z $(listen_ids ue3-2.out) ]] || fail "ue3 got a message after unsubscribing: $(cat ue3-2.out)"

stop_two_nodes
echo PASS
