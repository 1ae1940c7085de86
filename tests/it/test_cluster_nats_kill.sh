#!/usr/bin/env bash
# Fault test (issue 13, docs/scale-out.md "What happens on each failure": kill -9 of one NATS
# node): three nats-server nodes (streams and buckets R3), two m5s nodes a and b on them, a
# steady stream from two senders to ue2, which listens on node b (m5c listen over TLS):
#  - ue1 sends through node a (raw MSGin5G-1 over TLS, tests/it/ue_stream.py: one session,
#    store-and-forward MSGs back to back, a 5.03 sent again with the same msgId after its
#    Max-Age): a queues them on b's subjects, b pushes them;
#  - the AS as1 POSTs deliver-as-message to ue2 through node b back to back (curl; a 503 sent
#    again with the same msgId after its Retry-After);
#  - once both have acknowledgements, the node leading the deliveries' stream (P_Q, from the
#    monitoring port's /jsz) is killed with SIGKILL; the stream goes on: after the leader
#    election pause both senders are acknowledged again (during it they may get 5.03 / 503 and
#    resend), nothing else than 2.04 / 2xx or 5.03 / 503 is answered, and each 5.03 / 503
#    carries a Max-Age / Retry-After;
#  - every message acknowledged to either sender reaches ue2's application exactly once (m5c
#    drops a repeat of an (oriAddr, msgId) it already has; the raw repeats are logged).
# The pause (the longest gap between two acknowledgements of a sender) and the retries
# are logged, not asserted.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$M5_SRC/tests/nats_lib.bash"

PY=/usr/bin/python3
SUPI1=001010000000941
KAUSF1=4141414141414141414141414141414141414141414141414141414141414141
SUPI2=001010000000942
KAUSF2=4242424242424242424242424242424242424242424242424242424242424242
PREFIX=nk
ACKS_BEFORE=15 # per sender, before the kill
ACKS_AFTER=15  # per sender, after the first acknowledgement that follows the kill

start_nats_cluster 3
make_pki
start_aanf
JS="store: {backend: jetstream, js: {servers: [${NATS_URLS//,/, }], replicas: 3, prefix: $PREFIX, timeout_ms: 3000}}"
start_m5s "$JS" "node: {name: a}"
A_PID=$M5S_PID A_PORT=$M5S_PORT A_ADMIN=$M5S_ADMIN A_LOG=$M5S_LOG
B_LOG=$M5_TMP/m5s-b.log
M5S_DB=$M5_TMP/m5s-b/m5s.db LAUNCH_SECS=60 launch_daemon "$M5_BIN/m5s" write_m5s_config \
  "$M5_TMP/m5s-b.yaml" "$B_LOG" M5S_MGMT "$JS" "node: {name: b}" || {
  tail -n 40 "$B_LOG" >&2
  fail "node b did not become healthy"
}
B_PID=$LAUNCH_PID B_PORT=$M5S_PORT B_NORTH=$M5S_NORTH B_ADMIN="http://127.0.0.1:$M5S_MGMT"
# node a addressed for provisioning (the registry is shared)
M5S_PID=$A_PID M5S_PORT=$A_PORT M5S_ADMIN=$A_ADMIN M5S_LOG=$A_LOG
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
AKID1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field akid)
KAF1=$(akma_derive "$SUPI1" "$KAUSF1" tls13 | kv_field kaf)
[[ -n $AKID1 && -n $KAF1 ]] || fail "m5ctl akma derive gave nothing"
M5S_NORTH=$B_NORTH
as1_client # its token from node b

both_fail() { # MESSAGE: fail with the last lines of both nodes' logs
  echo "--- node a (last 30 lines) ---" >&2
  tail -n 30 "$A_LOG" >&2
  echo "--- node b (last 30 lines) ---" >&2
  tail -n 30 "$B_LOG" >&2
  fail "$@"
}

echo "=== ue2 listens on node b"
before=$(grep -c '[: ]ue2: registered' "$B_LOG" || true)
"$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "coaps+tcp://127.0.0.1:$B_PORT" listen \
  --timeout 400 >listen.out 2>listen.err &
LISTEN_PID=$!
track_pid "$LISTEN_PID"
for ((i = 0; i < 300; i++)); do
  (($(grep -c '[: ]ue2: registered' "$B_LOG" || true) > before)) && break
  kill -0 "$LISTEN_PID" 2>/dev/null || both_fail "ue2's listener exited: $(cat listen.err)"
  sleep 0.1
done
(($(grep -c '[: ]ue2: registered' "$B_LOG" || true) > before)) || both_fail "ue2 did not register on b"

echo "=== the stream: ue1 through node a, as1 through node b"
STOP=$M5_TMP/stop
"$PY" "$M5_SRC/tests/it/ue_stream.py" --port "$A_PORT" --kaf "$KAF1" --akid "$AKID1" --ori ue1 \
  --dest ue2 --prefix u --stop "$STOP" --gap 0.02 --timeout 60 >ue1.out 2>ue1.err &
UE_PID=$!
track_pid "$UE_PID"

# as_stream: as1's messages a-1, a-2, ... to ue2 through node b until $STOP exists; lines as
# ue_stream.py's.
as_stream() {
  local n=0 st after
  while [[ ! -e $STOP ]]; do
    n=$((n + 1))
    while :; do
      st=$(curl -s --http2 --max-time 60 --cacert "$M5_TMP/pki/ca.crt" --cert "$M5_TMP/pki/as1.crt" \
        --key "$M5_TMP/pki/as1.key" -H "authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' -D as-hdr.out -o as-body.out -w '%{http_code}' \
        -d "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue2\"},\"msgId\":\"a-$n\",\"payload\":\"c3RyZWFt\",\"stoAndFwInd\":true}" \
        "https://localhost:$B_NORTH/msgs-msgdelivery/v1/deliver-as-message") || st=000
      if [[ $st == 2?? ]]; then
        echo "ACK a-$n $(now_ms)"
        break
      elif [[ $st == 503 ]]; then
        after=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p' as-hdr.out)
        echo "RETRY a-$n 503 $(now_ms) retry-after=${after:--}"
        sleep "$(((${after:-60} > 2)) && echo 2 || echo "${after:-2}")"
      else
        echo "REFUSED a-$n $st $(now_ms) $(head -c 300 as-body.out)"
        break
      fi
    done
  done
  echo "DONE $n"
}
as_stream >as1.out 2>as1.err &
AS_PID=$!
track_pid "$AS_PID"

# acks OUT: acknowledgements so far; acks_since OUT MS: those at or after MS.
acks() { grep -c '^ACK ' "$1" || true; }
acks_since() { awk -v t="$2" '$1 == "ACK" && $3 >= t' "$1" | wc -l; }
# wait_acks N [SINCE_MS]: until both senders have N acknowledgements (since SINCE_MS); 180 s.
wait_acks() {
  local n=$1 since=${2:-0} i
  for ((i = 0; i < 1800; i++)); do
    (($(acks_since ue1.out "$since") >= n && $(acks_since as1.out "$since") >= n)) && return 0
    kill -0 "$UE_PID" 2>/dev/null || both_fail "ue1's stream stopped: $(tail -n 5 ue1.out ue1.err)"
    kill -0 "$AS_PID" 2>/dev/null || both_fail "as1's stream stopped: $(tail -n 5 as1.out)"
    sleep 0.1
  done
  both_fail "fewer than $n acknowledgements per sender: ue1 $(acks_since ue1.out "$since"), as1 $(acks_since as1.out "$since")"
}
wait_acks "$ACKS_BEFORE"

echo "=== kill -9 of the NATS node leading ${PREFIX}_Q"
leader=$(nats_stream_leader "${PREFIX}_Q")
victim=${leader#n}
[[ $victim =~ ^[123]$ ]] || { victim=1; echo "no leader of ${PREFIX}_Q found ('$leader'): killing n1"; }
KILL_MS=$(now_ms)
kill_nats_node "$victim"
echo "killed n$victim (leader '$leader') after ue1 $(acks ue1.out) and as1 $(acks as1.out) acknowledgements"

wait_acks "$ACKS_AFTER" "$KILL_MS"
touch "$STOP"
wait_pid_rc "$UE_PID" 120
[[ $WAIT_RC == 0 ]] || both_fail "ue1's stream (rc $WAIT_RC): $(tail -n 5 ue1.out ue1.err)"
wait_pid_rc "$AS_PID" 120
[[ $WAIT_RC == 0 ]] || both_fail "as1's stream (rc $WAIT_RC): $(tail -n 5 as1.out)"
! grep -h '^REFUSED' ue1.out as1.out | grep -q . ||
  both_fail "answered neither acknowledged nor 5.03 / 503: $(grep -h '^REFUSED' ue1.out as1.out | head -n 5)"

# every refusal said when to come back (Max-Age / Retry-After)
! grep -h '^RETRY' ue1.out as1.out | grep -Ev ' (max-age|retry-after)=[0-9]+$' | grep -q . ||
  both_fail "a 5.03 / 503 without Max-Age / Retry-After: $(grep -h '^RETRY' ue1.out as1.out | grep -Ev ' (max-age|retry-after)=[0-9]+$' | head -n 3)"

# the pause: the longest gap between two acknowledgements of one sender (the election), and
# the retries (5.03 / 503) each sender got
for f in ue1.out as1.out; do
  awk -v k="$KILL_MS" -v f="$f" '
    $1 == "ACK" { if (p && $3 - p > gap) { gap = $3 - p; at = p - k } p = $3 }
    $1 == "RETRY" { r++ }
    END { printf "%s: longest gap between acknowledgements %d ms (from %d ms after the kill), %d retries\n", f, gap, at, r }' "$f"
done

echo "=== every acknowledged message reaches ue2 once"
grep -h '^ACK ' ue1.out as1.out | awk '{print $2}' | sort -u >acked.txt
n_acked=$(wc -l <acked.txt)
ok=0
for ((i = 0; i < 1200; i++)); do
  if listen_ids listen.out | sort -u | comm -23 acked.txt - | grep -q .; then
    kill -0 "$LISTEN_PID" 2>/dev/null || break
    sleep 0.1
  else
    ok=1
    break
  fi
done
((ok)) || both_fail "acknowledged but not received by ue2: $(listen_ids listen.out | sort -u |
  comm -23 acked.txt - | head -n 10 | tr '\n' ' ') ($(tail -n 3 listen.err))"
sleep 2 # a repeated push would be handed over by now
kill -TERM "$LISTEN_PID"
wait_pid_rc "$LISTEN_PID" 15
[[ $WAIT_RC == 0 ]] || both_fail "ue2's listener exited $WAIT_RC: $(tail -n 5 listen.err)"
dups=$(listen_ids listen.out | sort | uniq -d | head -n 10 | tr '\n' ' ')
[[ -z $dups ]] || both_fail "handed to ue2's application more than once: $dups"
extra=$(listen_ids listen.out | sort -u | comm -13 acked.txt - | tr '\n' ' ')
pushes=$(grep -c 'MSG [ua]-[0-9]* delivered to ue2' "$B_LOG" || true)
echo "ok: $n_acked acknowledged, each received once by ue2 ($pushes pushes by node b: the repeats were dropped by m5c); received but not acknowledged: '${extra}'"

for n in a b; do
  pid_var=${n^^}_PID
  stop_daemon "${!pid_var}" "m5s $n" || both_fail "m5s $n did not stop cleanly"
done
echo PASS
