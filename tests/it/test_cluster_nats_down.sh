#!/usr/bin/env bash
# Fault test (issue 13, docs/scale-out.md "What happens on each failure": all NATS nodes down):
# m5s on the JetStream store (one nats-server, replicas 1) refuses what it cannot store and
# recovers by itself when NATS returns.
#  - before the outage ue1 (m5c) and the AS as1 (deliver-as-message) each send a
#    store-and-forward message to ue2, which is offline: both acknowledged;
#  - the nats-server is killed (-9): /healthz answers 503; ue1, on a session it opened before
#    (raw MSGin5G-1 over TLS, coap_raw.py), gets 5.03 with a Max-Age and a diagnostic for a new
#    MSG, as1 gets 503 with Retry-After and a ProblemDetails; nothing is acknowledged;
#  - the nats-server is started again on the same store: without a restart of m5s, /healthz is
#    200 again; ue1 sends its refused msgId again on the same session and a new one, as1 sends
#    its refused msgId again: each is accepted (2.04 MSGRESP / 2xx);
#  - ue2 comes online and receives the two messages acknowledged before the outage and the
#    three acknowledged after it, each once after m5c's duplicate rule (raw repeats logged).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$M5_SRC/tests/nats_lib.bash"

PY=/usr/bin/python3
RAW="$M5_SRC/tests/interop/coap_raw.py"
SUPI1=001010000000931
KAUSF1=3131313131313131313131313131313131313131313131313131313131313131
SUPI2=001010000000932
KAUSF2=3232323232323232323232323232323232323232323232323232323232323232

start_nats_cluster 1
make_pki
start_aanf
start_m5s "store: {backend: jetstream, js: {servers: [${NATS_URLS}], replicas: 1, prefix: down, timeout_ms: 2000}}" \
  "node: {name: a}"
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
[[ -n $AKID1 && -n $KAF1 ]] || fail "m5ctl akma derive gave nothing"
as1_client

# health_is CODE: /healthz answers CODE within 60 s; its body in health.out.
health_is() {
  local i st
  for ((i = 0; i < 600; i++)); do
    st=$(curl -s --max-time 5 -o health.out -w '%{http_code}' "$M5S_ADMIN/healthz" || true)
    [[ $st == "$1" ]] && return 0
    sleep 0.1
  done
  m5s_fail "/healthz never answered $1 (last: $st $(cat health.out))"
}

# as_send MSGID: as1's deliver-as-message to ue2 (store and forward); ST, out.json, headers in
# as-hdr.out.
as_send() {
  nb /msgs-msgdelivery/v1/deliver-as-message -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -D as-hdr.out \
    -d "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue2\"},\"msgId\":\"$1\",\"payload\":\"aGk=\",\"stoAndFwInd\":true}"
}

# ue_send MSGID: ue1 sends to ue2 with m5c (store and forward); the MSGRESP must say stored.
ue_send() {
  timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" send \
    --to ue:ue2 --msg-id "$1" --payload "hi $1" --store-forward >send.out 2>&1 ||
    m5s_fail "ue1's send $1: $(cat send.out)"
  grep -q '"status":"DELY_STORED"' send.out || m5s_fail "ue1's send $1: want DELY_STORED: $(cat send.out)"
}

echo "=== before the outage"
ue_send pre-ue
as_send pre-as
[[ $ST == 2?? ]] || m5s_fail "as1's pre-as: $ST $(cat out.json)"

# msg_json MSGID: ue1's store-and-forward MSG to ue2.
msg_json() {
  echo "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue2\"},\"msgId\":\"$1\",\"payload\":\"aGk=\",\"stoAndFwInd\":true}"
}

# ue1's session, opened before the outage and kept across it: a MSG during the outage, then
# (the script's go-ahead files) the same msgId again and a new one once NATS is back.
"$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$KAF1" --akid "$AKID1" --timeout 90 -- \
  reg:ue1 'expect:2.01|2.04' touch:"$M5_TMP/ue1.reg" waitfile:"$M5_TMP/ue1.go1" \
  "json:$(msg_json out-ue)" 'expect:5.03:max-age=*:diag~store' touch:"$M5_TMP/ue1.refused" \
  waitfile:"$M5_TMP/ue1.go2" \
  "json:$(msg_json out-ue)" 'expect:2.04:msgId=out-ue:status=DELY_STORED' \
  "json:$(msg_json post-ue)" 'expect:2.04:msgId=post-ue:status=DELY_STORED' >raw.out 2>raw.err &
RAW_PID=$!
track_pid "$RAW_PID"
for ((i = 0; i < 300; i++)); do
  [[ -e $M5_TMP/ue1.reg ]] && break
  kill -0 "$RAW_PID" 2>/dev/null || m5s_fail "ue1's session: $(cat raw.out raw.err)"
  sleep 0.1
done
[[ -e $M5_TMP/ue1.reg ]] || m5s_fail "ue1 did not register: $(cat raw.out raw.err)"

echo "=== all NATS down"
kill_nats_node 1
health_is 503
echo "healthz: $(cat health.out)"
touch "$M5_TMP/ue1.go1"
for ((i = 0; i < 600; i++)); do
  [[ -e $M5_TMP/ue1.refused ]] && break
  kill -0 "$RAW_PID" 2>/dev/null || m5s_fail "ue1's MSG during the outage: $(cat raw.out raw.err)"
  sleep 0.1
done
[[ -e $M5_TMP/ue1.refused ]] || m5s_fail "ue1's MSG during the outage: no answer: $(cat raw.out)"
grep '^< 5.03' raw.out
as_send out-as
[[ $ST == 503 ]] || m5s_fail "as1's out-as during the outage: want 503, got $ST $(cat out.json)"
grep -qi '^retry-after: [0-9]' as-hdr.out || m5s_fail "as1's 503 without Retry-After: $(cat as-hdr.out)"
validate TS29571_CommonData.yaml ProblemDetails out.json
[[ $(json_get out.json status) == 503 ]] || m5s_fail "as1's 503: ProblemDetails status: $(cat out.json)"
echo "as1 during the outage: $ST $(grep -i '^retry-after' as-hdr.out | tr -d '\r'), $(cat out.json)"

echo "=== NATS back (same store)"
start_nats_node 1
wait_nats_healthy 1
health_is 200
touch "$M5_TMP/ue1.go2"
wait_pid_rc "$RAW_PID" 120
[[ $WAIT_RC == 0 ]] || m5s_fail "ue1's session after the outage (rc $WAIT_RC): $(tail -n 20 raw.out) $(cat raw.err)"
as_send out-as
[[ $ST == 2?? ]] || m5s_fail "as1's out-as after the outage: $ST $(cat out.json)"
ue_send post-ue2

echo "=== ue2 gets what was acknowledged, each once"
set +e
timeout 90 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" listen \
  --count 7 --timeout 10 >listen.out 2>listen.err
rc=$?
set -e
[[ $rc == 4 ]] || m5s_fail "ue2's listen --count 7: exit $rc (want 4: six messages, no seventh): $(cat listen.err)"
got=$(listen_ids listen.out | sort | tr '\n' ' ')
want="out-as out-ue post-ue post-ue2 pre-as pre-ue "
[[ $got == "$want" ]] || m5s_fail "ue2 got '$got', want '$want' (each once): $(cat listen.err)"
stop_m5s
echo PASS
