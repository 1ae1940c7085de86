#!/usr/bin/env bash
# Fault test (issue 13, "kill -9 of an m5s node under a steady stream"; docs/scale-out.md): two
# m5s nodes a and b on one nats-server (JetStream store and registry, replicas 1), one m5-aanf,
# an AS (tests/interop/as_server.mjs) registered with its targetUri, two UEs with sessions on
# node a. Two steady streams, each sender sequential and resending what was not acknowledged
# (same msgId) until it is:
#  - UE to AS: ue2 sends u-<n> to as:as1 (m5c send, store-and-forward) through node a; a
#    queues each on its own subjects (an AS recipient stays on the accepting node) and POSTs it;
#  - AS to UE: as1 POSTs a-<n> for ue1 (deliver-as-message) to node a's northbound; ue1
#    listens on node a (m5c listen).
# Midway the AS goes down, so what ue2 sends next stays queued on a's subjects (stored,
# retried); then node a is killed (SIGKILL). The AS comes back; the senders turn to node b (as a
# load balancer would) and resend what was not acknowledged; ue1's m5c is restarted against b.
# Node b sees a's liveness key expire and takes a's deliveries over (docs/store.md, takeover):
# the AS deliveries stuck on a's subjects are POSTed by b. Asserted: every msgId any sender saw
# acknowledged reaches its application, exactly once after the protocol's duplicate rule
# (repeats of an (oriAddr, msgId) dropped: m5c listen within one run, the test across ue1's two
# runs and at the AS; the raw repeat counts are logged), and at least one AS delivery that was
# stuck on a's subjects at the kill reached the AS afterwards, through b's takeover.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$M5_SRC/tests/nats_lib.bash"
source "$M5_SRC/tests/cluster_lib.bash"

SUPI1=001010000000931
KAUSF1=3131313131313131313131313131313131313131313131313131313131313131
SUPI2=001010000000932
KAUSF2=3232323232323232323232323232323232323232323232323232323232323232
PY=/usr/bin/python3
PKI=$M5_TMP/pki
ACKS_AS_UP=8   # ue2's acks while the AS is up
ACKS_AS_DOWN=6 # then, with the AS down: stuck on a's subjects
ACKS_AFTER=6   # acks through node b after the kill, per sender
SEND_DEADLINE=240 # s: a sender gives up a msgId after this (then it is not acked)

make_pki
start_aanf
start_two_nodes m5kill
north_of() { sed -n 's/^north: {host: 127.0.0.1, port: \([0-9]*\)}$/\1/p' "$1"; }
A_NORTH=$(north_of "$M5_TMP/m5s.yaml")
B_NORTH=$(north_of "$M5_TMP/m5s-b.yaml")
[[ -n $A_NORTH && -n $B_NORTH ]] || fail "no northbound ports in the configs"

address a
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"

# ---- the AS: its client, its receiver, its registration (through node a) ---------------------
AS_PORT=$(pick_port)
AS_LOG=$M5_TMP/as.log
: >"$AS_LOG"
echo 204 >as.mode
as_up() {
  start_push_receiver tests/interop/as_server.mjs "$AS_PORT" "$AS_LOG" as.mode "$M5_TMP/as_server.$1.out"
  AS_PID=$PUSH_RECEIVER_PID
}
as_up 1
st=$(admin_curl -s --max-time 10 -o as-put.out -w '%{http_code}' -X PUT \
  -H 'content-type: application/json' -d "{\"targets\":[\"localhost:$AS_PORT\"]}" \
  "$A_ADMIN/admin/v1/as-clients/as1")
[[ $st == 20? ]] || fail "PUT as-clients/as1: HTTP $st $(cat as-put.out)"
# token_of PORT: an access token for as1 from the node on that northbound port (its issuer)
token_of() {
  curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" --key "$PKI/as1.key" \
    -d grant_type=client_credentials "https://localhost:$1/oauth2/token" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}
TOKEN=$(token_of "$A_NORTH")
[[ -n $TOKEN ]] || fail "no access token for as1"
st=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" --key "$PKI/as1.key" \
  -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -o reg.out -w '%{http_code}' \
  -d "{\"asSvcId\":\"as1\",\"targetUri\":\"https://localhost:$AS_PORT/msgin5g/\"}" \
  "https://localhost:$A_NORTH/msgs-asregistration/v1/registrations")
[[ $st == 201 ]] || fail "as1 registration: HTTP $st $(cat reg.out)"

# ---- ue1 listens on node a --------------------------------------------------------------------
address a
m5c_listen_bg ue1 tls listen-a.out 100000 400
LISTEN_A=$M5C_LISTEN_PID

# ---- the senders: which node they talk to is in the file "target"; "stop" ends them -----------
echo a >target
port_of() { if [[ $(cat target) == a ]]; then echo "$A_PORT"; else echo "$B_PORT"; fi; }
north_now() { if [[ $(cat target) == a ]]; then echo "$A_NORTH"; else echo "$B_NORTH"; fi; }

# ue_sender: u-1, u-2 ... from ue2 to as:as1; each resent until acked (m5c exit 0 with a
# MSGRESP); acked msgIds into ue-acked.txt, the attempts' outcomes into ue-send.log.
ue_sender() {
  local n=0 t0 rc
  while [[ ! -e stop ]]; do
    n=$((n + 1))
    t0=$SECONDS
    while :; do
      rc=0
      timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "coaps+tcp://127.0.0.1:$(port_of)" \
        --timeout 10 send --to as:as1 --msg-id "u-$n" --payload "up $n" --store-forward \
        >ue-one.out 2>&1 || rc=$?
      echo "u-$n $(cat target) rc=$rc $(tr '\n' ' ' <ue-one.out | cut -c1-200)" >>ue-send.log
      if ((rc == 0)) && grep -q '"msgType":"MSGRESP"' ue-one.out; then
        echo "u-$n" >>ue-acked.txt
        break
      fi
      ((SECONDS - t0 < SEND_DEADLINE)) || break
      sleep 0.3
    done
    sleep 0.2 # a steady stream, not a flood
  done
}

# as_sender: a-1, a-2 ... from as1 to ue1 (deliver-as-message, store-and-forward); each resent
# until answered 200 without DELY_FAILED; acked msgIds into as-acked.txt.
as_sender() {
  local n=0 t0 st north token=$TOKEN token_north=$A_NORTH
  while [[ ! -e stop ]]; do
    n=$((n + 1))
    t0=$SECONDS
    while :; do
      north=$(north_now)
      if [[ $north != "$token_north" ]]; then # a token of the node it talks to now
        token=$(token_of "$north" || true)
        token_north=$north
      fi
      st=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
        --key "$PKI/as1.key" -H "authorization: Bearer $token" -H 'content-type: application/json' \
        -o as-one.out -w '%{http_code}' \
        -d "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"msgId\":\"a-$n\",\"payload\":\"ZG93bg==\",\"stoAndFwInd\":true}" \
        "https://localhost:$north/msgs-msgdelivery/v1/deliver-as-message" 2>/dev/null || true)
      echo "a-$n $(cat target) $st $(cut -c1-200 as-one.out 2>/dev/null)" >>as-send.log
      if [[ $st == 200 ]] && ! grep -q DELY_FAILED as-one.out; then
        echo "a-$n" >>as-acked.txt
        break
      fi
      [[ $st != 401 ]] || token_north= # (a token from the other node)
      ((SECONDS - t0 < SEND_DEADLINE)) || break
      sleep 0.3
    done
    sleep 0.2 # a steady stream, not a flood
  done
}

: >ue-acked.txt
: >as-acked.txt
ue_sender &
UE_SENDER=$!
track_pid "$UE_SENDER"
as_sender &
AS_SENDER=$!
track_pid "$AS_SENDER"

# wait_acks FILE N SECONDS: until FILE has N lines.
wait_acks() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (($(wc -l <"$1") >= $2)) && return 0
    kill -0 "$UE_SENDER" 2>/dev/null && kill -0 "$AS_SENDER" 2>/dev/null ||
      fail "a sender stopped: $(tail -n 3 ue-send.log as-send.log)"
    sleep 0.1
  done
  fail "$1: fewer than $2 acks within $3 s: $(tail -n 3 ue-send.log as-send.log)"
}

# as_ids: "oriAddr msgId" of every UEMessageDelivery the AS got (a repeat: a line each).
as_ids() {
  $PY -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["path"].endswith("/deliver-message"):
        b = json.loads(r["body"])
        print(b["oriAddr"]["addr"], b["msgId"])' "$AS_LOG"
}
# ue1_ids OUT...: "oriAddr msgId" of every message ue1's listeners handed to the application.
ue1_ids() {
  $PY -c 'import json,sys
for f in sys.argv[1:]:
    for l in open(f):
        l = l.strip()
        if l.startswith("{"):
            o = json.loads(l)
            print(o["oriAddr"]["addr"], o["msgId"])' "$@"
}

wait_acks ue-acked.txt "$ACKS_AS_UP" 120
wait_acks as-acked.txt "$ACKS_AS_UP" 120
echo "=== the AS goes down: what ue2 sends now stays queued on node a's subjects"
kill -TERM "$AS_PID"
wait "$AS_PID" 2>/dev/null || true
n_up=$(wc -l <ue-acked.txt)
wait_acks ue-acked.txt $((n_up + ACKS_AS_DOWN)) 120

echo "=== kill -9 of node a"
kill -KILL "$A_PID"
wait "$A_PID" 2>/dev/null || true
echo b >target
cp ue-acked.txt ue-acked-at-kill.txt
cp as-acked.txt as-acked-at-kill.txt
as_ids | sort -u >as-at-kill.txt
echo "node a killed after $(wc -l <ue-acked.txt) acks of ue2 and $(wc -l <as-acked.txt) of as1"
as_up 2
# ue1's m5c turns to node b (its load balancer's choice after a's death)
kill -TERM "$LISTEN_A" 2>/dev/null || true
wait "$LISTEN_A" 2>/dev/null || true
address b
m5c_listen_bg ue1 tls listen-b.out 100000 400
LISTEN_B=$M5C_LISTEN_PID

n_ue=$(wc -l <ue-acked.txt)
n_as=$(wc -l <as-acked.txt)
wait_acks ue-acked.txt $((n_ue + ACKS_AFTER)) 200
wait_acks as-acked.txt $((n_as + ACKS_AFTER)) 200
touch stop
wait_pid_rc "$UE_SENDER" $((SEND_DEADLINE + 60))
wait_pid_rc "$AS_SENDER" $((SEND_DEADLINE + 60))

# ---- every acknowledged message at its application --------------------------------------------
missing() { # "ori msgId" lines wanted (stdin) not in the delivered list $1
  sort -u | comm -23 - <(sort -u "$1")
}
ok=0
t0=$SECONDS
while ((SECONDS - t0 < 150)); do # the takeover: 10 s after a's last liveness write, and more
  as_ids | sort -u >as-got.txt
  ue1_ids listen-a.out listen-b.out | sort -u >ue1-got.txt
  if ! sed 's/^/ue2 /' ue-acked.txt | missing as-got.txt | grep -q . &&
    ! sed 's/^/as1 /' as-acked.txt | missing ue1-got.txt | grep -q .; then
    ok=1
    break
  fi
  kill -0 "$LISTEN_B" 2>/dev/null || break
  sleep 0.5
done
((ok)) || fail "acknowledged messages missing: at the AS: $(sed 's/^/ue2 /' ue-acked.txt |
  missing as-got.txt | head -n 10 | tr '\n' ' '); at ue1: $(sed 's/^/as1 /' as-acked.txt |
  missing ue1-got.txt | head -n 10 | tr '\n' ' '); node b: $(grep -c 'took over' "$B_LOG" || true) takeovers"
sleep 3 # a late repeat would show now
kill -TERM "$LISTEN_B"
wait_pid_rc "$LISTEN_B" 15

# nothing the senders did not send; repeats logged (the duplicate rule drops them)
as_ids | sort -u >as-got.txt
ue1_ids listen-a.out listen-b.out | sort -u >ue1-got.txt
sent_u=$(awk '{print $1}' ue-send.log | sort -u | sed 's/^/ue2 /')
sent_a=$(awk '{print $1}' as-send.log | sort -u | sed 's/^/as1 /')
extra=$(comm -23 as-got.txt <(echo "$sent_u" | sort -u) | head -n 5 | tr '\n' ' ')
[[ -z $extra ]] || fail "the AS got messages nobody sent: $extra"
extra=$(comm -23 ue1-got.txt <(echo "$sent_a" | sort -u) | head -n 5 | tr '\n' ' ')
[[ -z $extra ]] || fail "ue1 got messages nobody sent: $extra"
for f in listen-a.out listen-b.out; do # m5c listen's own rule: no repeat within a run
  d=$(ue1_ids "$f" | sort | uniq -d | head -n 5 | tr '\n' ' ')
  [[ -z $d ]] || fail "m5c listen handed a repeat to the application ($f): $d"
done
as_raw=$(as_ids | wc -l)
ue_raw=$(ue1_ids listen-a.out listen-b.out | wc -l)
echo "AS: $(wc -l <ue-acked.txt) acked, $(wc -l <as-got.txt) distinct received, $((as_raw - $(wc -l <as-got.txt))) raw repeats"
echo "ue1: $(wc -l <as-acked.txt) acked, $(wc -l <ue1-got.txt) distinct received, $((ue_raw - $(wc -l <ue1-got.txt))) raw repeats (across its two m5c runs)"

# the AS deliveries stuck on a's subjects at the kill came through b's takeover
stuck=$(sed 's/^/ue2 /' ue-acked-at-kill.txt | missing as-at-kill.txt | wc -l)
((stuck > 0)) || fail "no AS delivery was left on node a at the kill: the test did not exercise the takeover"
grep -q 'took over [1-9][0-9]* deliveries of node a' "$B_LOG" ||
  fail "node b did not log a takeover of node a: $(grep -i 'dead\|took over' "$B_LOG" | tail -n 3)"
echo "ok: $stuck AS deliveries left on node a at the kill reached the AS through node b; $(grep -o 'took over [0-9]* deliveries of node a' "$B_LOG" | head -n 3 | tr '\n' ' ')"

address b
stop_m5s
echo PASS
