#!/usr/bin/env bash
# Integration: two m5s nodes sharing their registry through NATS KV (store.backend jetstream;
# issue 13 "a binding changed on node A while the UE holds a session on node B";
# src/server/registry/registry_js.c). Real nats-server (one, replicas 1), m5-aanf, two m5s
# (nodes a and b: own ports and SQLite files, one PKI, one admin token file), m5ctl, m5c:
#  - ue1 is provisioned through node a's admin API (m5ctl subscriber add) and registers on
#    node b: b uses the binding a made;
#  - node a's admin API reports ue1 registered (the registration b made, seen by a);
#  - ue1 is re-bound to another subscriber through node a: node b closes the old
#    subscriber's session (its log says so), the old subscriber's m5c reconnects to b and is
#    refused (4.03, m5c exits non-zero), and the new subscriber registers on b;
#  - an AS client made through node b is listed by node a.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$M5_SRC/tests/nats_lib.bash"
source "$M5_SRC/tests/cluster_lib.bash"

SUPI1=001010000000901
KAUSF1=0909090909090909090909090909090909090909090909090909090909090909
SUPI1B=001010000000911
KAUSF1B=1919191919191919191919191919191919191919191919191919191919191919

make_pki
start_aanf
start_two_nodes m5it
grep -q 'shared through NATS KV' "$A_LOG" || m5s_fail "node a: the registry is not shared"
grep -q 'shared through NATS KV' "$B_LOG" || fail "node b: the registry is not shared"

echo "=== ue1 bound through node a, registered on node b"
address a
setup_ue ue1 "$SUPI1" "$KAUSF1"
address b
m5c_listen_bg ue1 tls listen-old.out 1 60
OLD_PID=$M5C_LISTEN_PID
address a
for ((i = 0; i < 100; i++)); do
  admin_curl -s --max-time 10 "$A_ADMIN/admin/v1/bindings/ue1" >binding-a.json
  [[ $(json_get binding-a.json registered) == true ]] && break
  sleep 0.1
done
[[ $(json_get binding-a.json registered) == true ]] ||
  m5s_fail "node a does not see ue1's registration on node b: $(cat binding-a.json)"
[[ $(json_get binding-a.json supi) == "$SUPI1" ]] || m5s_fail "node a: wrong SUPI"

echo "=== ue1 re-bound through node a: its session on node b goes, the old subscriber is refused"
"$M5_BIN/m5ctl" subscriber add --supi "$SUPI1B" --kausf "$KAUSF1B" --ue-svc-id ue1 \
  --aanf "$AANF_URL" --m5s-admin "$A_ADMIN" --pki "$M5_TMP/pki" >rebind.out 2>&1 ||
  m5s_fail "m5ctl subscriber add (re-bind through a): $(cat rebind.out)"
wait_file_line "$B_LOG" 'ue1: binding changed in the cluster; closing its session here' 30 ||
  fail "node b did not close ue1's session: $(tail -n 20 "$B_LOG")"
wait_pid_rc "$OLD_PID" 60
((WAIT_RC != 0 && WAIT_RC != 124)) ||
  fail "the old subscriber's m5c on node b was not refused (rc $WAIT_RC): $(cat listen-old.out)"
grep -q 'not bound to this subscriber' listen-old.out ||
  fail "the old subscriber's m5c: no 4.03 'not bound to this subscriber': $(cat listen-old.out)"
address b
m5c_config ue1 "$SUPI1B" "$KAUSF1B"
m5c_listen_bg ue1 tls listen-new.out 1 30
kill -TERM "$M5C_LISTEN_PID" 2>/dev/null || true
wait "$M5C_LISTEN_PID" 2>/dev/null || true

echo "=== an AS client made through node b is listed by node a"
st=$(admin_curl -s --max-time 10 -X PUT -H 'content-type: application/json' \
  --data-binary '{"targets":["127.0.0.1:9"]}' -o as-put.out -w '%{http_code}' \
  "$B_ADMIN/admin/v1/as-clients/as1")
[[ $st == 201 ]] || fail "PUT as-clients/as1 on b: HTTP $st $(cat as-put.out)"
st=$(admin_curl -s --max-time 10 -o as-get.out -w '%{http_code}' "$A_ADMIN/admin/v1/as-clients/as1")
[[ $st == 200 ]] || fail "GET as-clients/as1 on a: HTTP $st $(cat as-get.out)"

stop_two_nodes
echo PASS
