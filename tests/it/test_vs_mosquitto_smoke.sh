#!/usr/bin/env bash
# Smoke run of the fair side-by-side harness (bench/vs-mosquitto, docs/benchmarks.md) so the
# comparison keeps working: 2 pairs, 1 round of 1-second windows against the real m5-aanf, m5s
# and Mosquitto, with m5s's DTLS and application-to-point runs. It asserts only that the metric lines and the JSON come out, that both sides
# negotiated the same TLS 1.3 suite and group, and that nothing was lost, duplicated or refused;
# never a figure (performance is claimed from `make bench`, not from tests; a generator-bound
# run, which depends on the machine's speed, is counted here: --keep-generator-bound).
# Then the generators' accounting: a server killed mid-run must fail the run (m5load, mqload
# exit 1 with lost_sessions > 0) instead of reporting a result; and mqload's fan-out mode (its
# own MQTT client, bench/mqc.c): each subscriber gets each message once.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

for b in m5load mqload; do
  [[ -x $M5_BIN/$b ]] || fail "$M5_BIN/$b missing (make build-test builds it)"
done
command -v mosquitto >/dev/null || fail "mosquitto missing (make test installs it)"

# ---- the harness end to end ----
timeout 240 "$M5_SRC/bench/vs-mosquitto" --no-build --build "$M5_BIN/.." --pairs 2 --rounds 1 \
  --duration 1 --warm 0.3 --idle-clients 0 --store-dir "$M5_TMP/stores" --out-dir "$M5_TMP/results" \
  --keep-generator-bound \
  >vs.out 2>vs.err || fail "vs-mosquitto failed: $(tail -n 15 vs.err)"
for m in p2p_msgs_per_s p99_ms_at_half_load cpu_us_per_msg cpu_us_per_msg_at_half_load; do
  grep -Eq "^$m m5s=[0-9.]+ mosquitto=[0-9.]+ ratio=[0-9.]+$" vs.out || fail "no line for $m: $(cat vs.out)"
done
grep -qx 'refused m5s=0 mosquitto=0' vs.out || fail "refusals: $(grep refused vs.out)"
# m5s's paths without a Mosquitto peer (DTLS, application-to-point over HTTP/2): no ratio
for m in dtls_p2p_msgs_per_s north_a2p_msgs_per_s; do
  grep -Eq "^$m m5s=[0-9]+$" vs.out || fail "no line for $m: $(cat vs.out)"
done
res=$(ls "$M5_TMP"/results/*-vs-mosquitto.txt) || fail "no results file"
json=${res%.txt}.json
[[ -s $json ]] || fail "no JSON next to $res"
python3 - "$json" <<'EOF' || fail "JSON: $(cat "$json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["metrics"]["p2p_msgs_per_s"]["m5s"] > 0 and d["metrics"]["p2p_msgs_per_s"]["mosquitto"] > 0
runs = d["runs"]
main = d["meta"]["m5s_main"]  # m5s with one worker per server core: m5s-w1 on 2 cores
assert main in ("m5s-w%d" % n for n in range(1, 257)), main
# a saturation and a paced run of each system, a saturation run of m5s-dtls and m5s-north
assert sorted((r["system"], r["kind"]) for r in runs) == sorted(
    [(s, k) for s in ("mosquitto", main) for k in ("sat", "paced")]
    + [("m5s-dtls", "sat"), ("m5s-north", "sat")]), runs
for r in runs:
    assert not r["failed"], r
    t = r["total"]
    assert t["lost"] == 0 and t["dup"] == 0 and t["failed"] == 0 and t["lost_sessions"] == 0, r
    assert t["delivered"] > 0 and t["delivered"] == t["sent"], r
suites = {(x["system"], x["suite"], x["group"], x["kex"]) for x in d["tls"] if x["system"] != "m5s-dtls"}
assert {s[1:] for s in suites} == {("TLS_AES_128_GCM_SHA256", "X25519", "psk_dhe_ke")}, suites
assert {s[0] for s in suites} == {"mosquitto", main, "m5s-north"}, suites
assert any(x["system"] == "m5s-dtls" and x["version"] == "DTLSv1.2" for x in d["tls"]), d["tls"]
EOF
grep -q '^# mosquitto: persistence true, autosave_interval' "$res" || fail "persistence not in $res"
grep -q '^# stores: a fresh directory per run under .*filesystem: ' "$res" || fail "store filesystem not in $res"
[[ -z $(ls -A "$M5_TMP/stores" 2>/dev/null) ]] || fail "stores left behind: $(ls "$M5_TMP/stores")"
echo "vs-mosquitto smoke: $(grep -E "^[a-z0-9_]+ m5s=" vs.out | tr "\n" ";")"

# ---- a lost session fails the run: Mosquitto killed mid-run ----
PORT=$(pick_port)
"$M5_BIN/mqload" --print-psk --pairs 2 >psk.txt
"$M5_BIN/mqload" --print-psk --fanout 3 >>psk.txt
chmod 600 psk.txt
{
  echo "allow_anonymous true"
  [[ $(id -u) -eq 0 ]] && echo "user root"
  echo "listener $PORT 127.0.0.1"
  echo "psk_hint bench"
  echo "psk_file $M5_TMP/psk.txt"
  echo "use_identity_as_username false"
} >mq.conf
mosquitto -c mq.conf >mq.log 2>&1 &
MQ=$!
track_pid "$MQ"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$M5_BIN/mqload" --port "$PORT" --fanout 3 --msgs 5 --quiet 0.1 >fan.out 2>fan.err ||
  fail "mqload --fanout failed: $(cat fan.out fan.err)"
grep -Eq '^RESULT .* members=3 registered=3 sent=5 expected=5 received=15 duplicates=0 missing=0 unexpected=0 lost=0 ' fan.out ||
  fail "fan-out: $(cat fan.out)"
"$M5_BIN/mqload" --port "$PORT" --pairs 2 --warm 0.2 --secs 30 --half 0 --drain 1 >mql.out 2>mql.err &
GEN=$!
track_pid "$GEN"
wait_file_line mql.err 'pairs ready' 30 "$GEN" || fail "mqload did not start: $(cat mql.err)"
kill -KILL "$MQ"
wait_pid_rc "$GEN" 60
((WAIT_RC == 1)) || fail "mqload exit $WAIT_RC after its broker died (want 1): $(cat mql.out mql.err)"
grep -Eq 'phase=total .*lost_sessions=[1-9][0-9]* ok=0' mql.out || fail "no lost session counted: $(cat mql.out)"

# ---- the same for m5load: m5s killed mid-run ----
make_pki
start_aanf
start_m5s "log: {level: warn}"
provision_load_pairs 1
"$M5_BIN/m5load" --port "$M5S_PORT" --pairs 1 --warm 0.2 --secs 30 --half 0 --drain 1 >m5l.out 2>m5l.err &
GEN=$!
track_pid "$GEN"
wait_file_line m5l.err 'pairs ready' 60 "$GEN" || fail "m5load did not start: $(cat m5l.err)"
kill -KILL "$M5S_PID"
wait_pid_rc "$GEN" 60
((WAIT_RC == 1)) || fail "m5load exit $WAIT_RC after m5s died (want 1): $(cat m5l.out m5l.err)"
grep -Eq 'phase=total .*lost_sessions=[1-9][0-9]* ok=0' m5l.out || fail "no lost session counted: $(cat m5l.out)"
echo "vs-mosquitto smoke: ok"
