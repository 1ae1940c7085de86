#!/usr/bin/env bash
# Integration: the m5s management figures (docs/admin-api.md "Metrics and stats", issue 4):
#  - GET /metrics is Prometheus text 0.0.4: every line a `# HELP`/`# TYPE` comment or a sample
#    `name{labels} number`, each metric TYPEd before its samples, every figure of the issue
#    present (refused by reason, sessions by transport); other methods get 405; the store runs
#    with synchronous=FULL as read back from SQLite (msgin5g_store_synchronous 2);
#  - GET /admin/v1/stats gives the same figures as JSON, and `m5ctl stats` prints exactly the
#    /metrics sample names with the JSON's values; m5ctl's usage errors exit 2, an unreachable
#    admin port exits 1;
#  - while ue2 (DTLS) and ue1 (TLS) are connected and registered, the gauges count them: a
#    session on each transport and both registrations;
#  - every figure moves by exactly what happened: one message ue1 -> ue2 sent with every
#    delivery option (--report --store-forward --expire --priority high) is one delivery; the
#    receiver gets the options on the pushed MSG and answers with an IMDN, which m5s must accept
#    (2.04) and queue for ue1 (offline): one queued; ue1 comes back and gets the report: two
#    deliveries, nothing queued; the same msgId again is one duplicate and nothing else; nothing
#    failed, expired or was refused.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
M5CTL="$M5_BIN/m5ctl"
SUPI1=001010000000301
KAUSF1=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
SUPI2=001010000000302
KAUSF2=2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f41

make_pki
start_aanf
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"

# check_metrics FILE: Prometheus text exposition format 0.0.4, with every figure of issue 4.
check_metrics() {
  $PY - "$1" <<'EOF2' || m5s_fail "/metrics is not the expected Prometheus text: $(cat "$1")"
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
assert text.endswith("\n"), "no final newline"
name_re = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label_re = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
sample = re.compile(r"^(%s)(\{%s(?:,%s)*\})? (-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|NaN|[-+]Inf)$"
                    % (name_re, label_re, label_re))
typed, helped, seen = {}, set(), {}
for line in text.splitlines():
    if line.startswith("#"):
        m = re.match(r"^# (HELP|TYPE) (%s) (.+)$" % name_re, line)
        assert m, "bad comment line: %r" % line
        if m.group(1) == "TYPE":
            assert m.group(3) in ("counter", "gauge", "untyped", "summary", "histogram"), line
            assert m.group(2) not in typed, "TYPE twice: %r" % line
            typed[m.group(2)] = m.group(3)
        else:
            helped.add(m.group(2))
        continue
    m = sample.match(line)
    assert m, "not `name{labels} number`: %r" % line
    assert m.group(1) in typed, "sample before its TYPE: %r" % line
    key = m.group(1) + (m.group(2) or "")
    assert key not in seen, "sample twice: %r" % line
    seen[key] = float(m.group(3))
want = {
    "msgin5g_messages_queued": "gauge",
    "msgin5g_messages_delivered_total": "counter",
    "msgin5g_messages_expired_total": "counter",
    "msgin5g_messages_failed_total": "counter",
    'msgin5g_messages_refused_total{reason="queue_full"}': "counter",
    'msgin5g_messages_refused_total{reason="store_full"}': "counter",
    'msgin5g_messages_refused_total{reason="originator_quota"}': "counter",
    "msgin5g_reports_dropped_total": "counter",
    "msgin5g_deliveries_requeued_total": "counter",
    "msgin5g_store_synchronous": "gauge",
    'msgin5g_store_commits_total{synced="yes"}': "counter",
    'msgin5g_store_commits_total{synced="no"}': "counter",
    "msgin5g_store_sqlite_memory_bytes": "gauge",
    "msgin5g_duplicates_total": "counter",
    'msgin5g_sessions{transport="dtls"}': "gauge",
    'msgin5g_sessions{transport="tls"}': "gauge",
    "msgin5g_registrations": "gauge",
    "msgin5g_accepts_in_flight": "gauge",
    "msgin5g_accepts_in_flight_bytes": "gauge",
    "msgin5g_requests_waiting": "gauge",
    "msgin5g_requests_waiting_bytes": "gauge",
    "msgin5g_requests_waited_total": "counter",
    "msgin5g_requests_busy_total": "counter",
    "msgin5g_store_cache_bytes": "gauge",
    "msgin5g_store_js_connected": "gauge",
    "msgin5g_store_js_consumer_pending": "gauge",
}
for key, kind in want.items():
    assert key in seen, "missing sample " + key
    base = key.split("{")[0]
    assert typed[base] == kind, "%s: TYPE %s, want %s" % (base, typed[base], kind)
    assert base in helped, "no HELP for " + base
    assert seen[key] >= 0 and seen[key] == int(seen[key]), key
for base, kind in typed.items():
    assert kind != "counter" or base.endswith("_total"), "counter without _total: " + base
EOF2
}

# snapshot PREFIX: PREFIX.metrics, PREFIX.json and PREFIX.ctl (m5ctl stats), taken until the
# JSON before and after m5ctl agree (gauges may move while a session closes).
snapshot() {
  local p=$1 i st
  for ((i = 0; i < 20; i++)); do
    st=$(curl -s --max-time 5 -D "$p.hdr" -o "$p.metrics" -w '%{http_code}' "$M5S_ADMIN/metrics")
    [[ $st == 200 ]] || m5s_fail "GET /metrics: HTTP $st $(cat "$p.metrics")"
    st=$(curl -s --max-time 5 -o "$p.json" -w '%{http_code}' "$M5S_ADMIN/admin/v1/stats")
    [[ $st == 200 ]] || m5s_fail "GET /admin/v1/stats: HTTP $st $(cat "$p.json")"
    "$M5CTL" stats --m5s-admin "$M5S_ADMIN" >"$p.ctl" 2>"$p.ctl.err" ||
      m5s_fail "m5ctl stats: $(cat "$p.ctl.err")"
    curl -s --max-time 5 -o "$p.json2" "$M5S_ADMIN/admin/v1/stats"
    cmp -s "$p.json" "$p.json2" && return 0
    sleep 0.2
  done
  m5s_fail "the stats never held still for one m5ctl stats call"
}

# check_snapshot PREFIX: /metrics well-formed; m5ctl stats = the JSON's figures, named as the
# /metrics samples.
check_snapshot() {
  local p=$1
  grep -qi '^content-type: text/plain; version=0.0.4' "$p.hdr" ||
    m5s_fail "/metrics content type: $(cat "$p.hdr")"
  check_metrics "$p.metrics"
  $PY - "$p.metrics" "$p.json" "$p.ctl" <<'EOF2' || m5s_fail "m5ctl stats differs from /admin/v1/stats: $(cat "$p.ctl") vs $(cat "$p.json")"
import json, sys
prom = [l.rsplit(" ", 1)[0] for l in open(sys.argv[1]).read().splitlines() if not l.startswith("#")]
o = json.load(open(sys.argv[2]))
ctl = [l.rsplit(" ", 1) for l in open(sys.argv[3]).read().splitlines()]
assert [n for n, _ in ctl] == prom, ([n for n, _ in ctl], prom)
paths = {
    "msgin5g_messages_queued": ("messagesQueued",),
    "msgin5g_messages_delivered_total": ("messagesDelivered",),
    "msgin5g_messages_expired_total": ("messagesExpired",),
    "msgin5g_messages_failed_total": ("messagesFailed",),
    'msgin5g_messages_refused_total{reason="queue_full"}': ("messagesRefused", "queueFull"),
    'msgin5g_messages_refused_total{reason="store_full"}': ("messagesRefused", "storeFull"),
    'msgin5g_messages_refused_total{reason="originator_quota"}': ("messagesRefused", "originatorQuota"),
    "msgin5g_reports_dropped_total": ("reportsDropped",),
    "msgin5g_deliveries_requeued_total": ("deliveriesRequeued",),
    "msgin5g_store_synchronous": ("storeSynchronous",),
    'msgin5g_store_commits_total{synced="yes"}': ("storeCommits", "synced"),
    'msgin5g_store_commits_total{synced="no"}': ("storeCommits", "unsynced"),
    "msgin5g_store_sqlite_memory_bytes": ("storeSqliteMemory",),
    "msgin5g_duplicates_total": ("duplicates",),
    'msgin5g_sessions{transport="dtls"}': ("sessions", "dtls"),
    'msgin5g_sessions{transport="tls"}': ("sessions", "tls"),
    "msgin5g_registrations": ("registrations",),
    "msgin5g_akma_fetches_total": ("akmaFetches",),
    'msgin5g_akma_refused_total{reason="handshakes"}': ("akmaRefused", "handshakes"),
    'msgin5g_akma_refused_total{reason="handshakes_per_addr"}': ("akmaRefused", "handshakesPerAddr"),
    'msgin5g_akma_refused_total{reason="handshakes_per_prefix"}': ("akmaRefused", "handshakesPerPrefix"),
    'msgin5g_akma_refused_total{reason="fetches"}': ("akmaRefused", "fetches"),
    'msgin5g_akma_refused_total{reason="fetches_per_addr"}': ("akmaRefused", "fetchesPerAddr"),
    'msgin5g_akma_refused_total{reason="fetches_per_prefix"}': ("akmaRefused", "fetchesPerPrefix"),
    'msgin5g_akma_refused_total{reason="unknown_akid_rate"}': ("akmaRefused", "unknownAkidRate"),
    'msgin5g_akma_refused_total{reason="source_table_full"}': ("akmaRefused", "sourceTableFull"),
    "msgin5g_accepts_in_flight": ("inFlight", "accepts"),
    "msgin5g_accepts_in_flight_bytes": ("inFlight", "acceptBytes"),
    "msgin5g_requests_waiting": ("inFlight", "waiting"),
    "msgin5g_requests_waiting_bytes": ("inFlight", "waitingBytes"),
    "msgin5g_requests_waited_total": ("inFlight", "waitedTotal"),
    "msgin5g_requests_busy_total": ("inFlight", "busyTotal"),
    "msgin5g_store_cache_bytes": ("storeCacheBytes",),
    "msgin5g_store_js_connected": ("storeJs", "connected"),
    "msgin5g_store_js_consumer_pending": ("storeJs", "consumerPending"),
}
for name, value in ctl:
    v = o
    for k in paths[name]:
        v = v[k]
    assert isinstance(v, int) and v >= 0, (name, v)
    assert int(value) == v, (name, value, v)
EOF2
}

snapshot before
check_snapshot before
# the store commits with synchronous=FULL (read back from SQLite), so an ack survives a power loss
grep -qx 'msgin5g_store_synchronous 2' before.metrics ||
  m5s_fail "the store does not run with synchronous=FULL: $(grep synchronous before.metrics)"

# ---- one message with every delivery option, and its report -----------------------------------
m5c_listen_bg ue2 dtls listen2.out 1 30
L2=$M5C_LISTEN_PID

# ---- the gauges while both UEs are connected and registered -----------------------------------
m5c_listen_bg ue1 tls listen1.out 1 30
L1=$M5C_LISTEN_PID
snapshot live
check_snapshot live
$PY - live.metrics <<'EOF2' || m5s_fail "the gauges miss the two live UEs: $(cat live.metrics)"
import sys
v = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1])
     for l in open(sys.argv[1]).read().splitlines() if not l.startswith("#")}
assert v['msgin5g_sessions{transport="dtls"}'] == 1, v
assert v['msgin5g_sessions{transport="tls"}'] == 1, v
assert v["msgin5g_registrations"] == 2, v
# the store's page cache is reported (part of RSS): it holds at least what the open read
assert v["msgin5g_store_cache_bytes"] > 0, v
EOF2
kill -TERM "$L1" 2>/dev/null || true
wait_pid_rc "$L1" 10
[[ $WAIT_RC != 124 ]] || m5s_fail "m5c listen (ue1) ignored SIGTERM: $(cat listen1.out)"

rc=0
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" send \
  --to ue:ue2 --payload 'metered' --msg-id met-1 --report --store-forward --expire 600 \
  --priority high >send.out 2>send.err || rc=$?
[[ $rc == 0 ]] || m5s_fail "m5c send with every option exited $rc: $(cat send.out send.err)"
$PY - send.out <<'EOF2' || m5s_fail "send: bad MSGRESP: $(cat send.out)"
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o.get("msgType") == "MSGRESP" and o.get("msgId") == "met-1", o
assert o.get("status", "") in ("", "DELY_STORED"), o
EOF2
wait_pid_rc "$L2" 20
[[ $WAIT_RC == 0 ]] || m5s_fail "m5c listen exited $WAIT_RC: $(cat listen2.out)"
$PY - listen2.out <<'EOF2' || m5s_fail "the pushed MSG lacks the options: $(cat listen2.out)"
import json, sys, time, datetime
lines = [json.loads(l) for l in open(sys.argv[1]).read().splitlines() if l.startswith("{")]
assert len(lines) == 1, lines
o = lines[0]
assert o["msgType"] == "MSG" and o["msgId"] == "met-1" and o["payloadText"] == "metered", o
assert o.get("delivStReqInd") is True, o
assert o.get("stoAndFwInd") is True, o
assert o.get("priority") == "HIGH", o
t = datetime.datetime.strptime(o["stoAndFwParams"]["exprTime"], "%Y-%m-%dT%H:%M:%SZ")
left = t.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()
assert 500 < left <= 601, "exprTime %s is %d s away, want about 600" % (t, left)
EOF2
# The IMDN reached m5s and was accepted: m5c logs a 4.xx answer ("report dropped"); a 2.04 only
# at debug level, so the proof is the report waiting in the store for ue1 (below).
! grep -q 'IMDN for met-1: server answered' listen2.out ||
  m5s_fail "m5s did not accept ue2's IMDN: $(cat listen2.out)"

# expect_stats WHAT PYTHON_ASSERTS: polls /admin/v1/stats (at most 15 s) until the asserts
# hold on b (before.json) and a (now), then checks /metrics and m5ctl stats agree with it.
expect_stats() {
  local what=$1 code=$2 i
  for ((i = 0; i < 75; i++)); do
    snapshot now
    $PY - before.json now.json "$code" <<'EOF2' 2>stats.err && break
import json, sys
b, a = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
exec(sys.argv[3])
EOF2
    sleep 0.2
  done
  ((i < 75)) || m5s_fail "$what: $(cat stats.err) before $(cat before.json) now $(cat now.json)"
  check_snapshot now
  echo "stats $what: $(tr '\n' ' ' <now.ctl)"
}
D='def d(*k):
    x, y = a, b
    for j in k: x, y = x[j], y[j]
    return x - y
'

expect_stats "after met-1 and its IMDN" "$D
assert d('messagesDelivered') == 1, ('delivered', d('messagesDelivered'))
assert a['messagesQueued'] == 1, ('queued: the IMDN for ue1', a['messagesQueued'])
assert d('messagesFailed') == 0 and d('messagesExpired') == 0 and d('duplicates') == 0, a
assert d('messagesRefused', 'queueFull') == 0 and d('messagesRefused', 'storeFull') == 0, a"

# ue1 comes back and gets the report on met-1
m5c_listen_bg ue1 tls listen1b.out 1 30
wait_pid_rc "$M5C_LISTEN_PID" 20
[[ $WAIT_RC == 0 ]] || m5s_fail "m5c listen (ue1) exited $WAIT_RC: $(cat listen1b.out)"
grep -q '"msgType":"IMDN".*"msgId":"met-1".*"delivSt":"REPT_DELY_SUCCESS"' listen1b.out ||
  m5s_fail "ue1 did not get the report on met-1: $(cat listen1b.out)"
expect_stats "after the report" "$D
assert d('messagesDelivered') == 2, ('delivered', d('messagesDelivered'))
assert a['messagesQueued'] == 0, ('queued', a['messagesQueued'])
assert d('messagesFailed') == 0 and d('messagesExpired') == 0 and d('duplicates') == 0, a
assert d('messagesRefused', 'queueFull') == 0 and d('messagesRefused', 'storeFull') == 0, a"
# the same msgId again: a retransmission, answered with the first ack, counted once
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" send \
  --to ue:ue2 --payload 'metered' --msg-id met-1 --report --store-forward --expire 600 \
  --priority high >send2.out 2>send2.err || m5s_fail "m5c send met-1 again: $(cat send2.out send2.err)"
grep -q '"msgId":"met-1"' send2.out || m5s_fail "send met-1 again: $(cat send2.out)"
expect_stats "after met-1 again" "$D
assert d('duplicates') == 1, ('duplicates', d('duplicates'))
assert d('messagesDelivered') == 2 and a['messagesQueued'] == 0, a
assert d('messagesFailed') == 0 and d('messagesExpired') == 0, a
assert d('messagesRefused', 'queueFull') == 0 and d('messagesRefused', 'storeFull') == 0, a"

cp now.json after.json

# ---- methods, m5ctl usage and failures -------------------------------------------------------
for path in /metrics /admin/v1/stats; do
  st=$(curl -s --max-time 5 -X POST -D post.hdr -o post.out -w '%{http_code}' "$M5S_ADMIN$path")
  [[ $st == 405 ]] || m5s_fail "POST $path: HTTP $st, want 405"
  grep -qi '^allow: GET' post.hdr || m5s_fail "POST $path: no Allow: GET"
done
ctl_usage() {
  local want=$1 rc=0
  shift
  "$M5CTL" "$@" >ctl.out 2>ctl.err || rc=$?
  [[ $rc == 2 ]] || m5s_fail "m5ctl $*: exit $rc, want 2 ($(cat ctl.err))"
  [[ $(wc -l <ctl.err) == 1 ]] && grep -qF -- "$want" ctl.err ||
    m5s_fail "m5ctl $*: want one stderr line naming $want: $(cat ctl.err)"
  [[ ! -s ctl.out ]] || m5s_fail "m5ctl $*: unexpected stdout $(cat ctl.out)"
}
ctl_usage --m5s-admin stats --m5s-admin ftp://127.0.0.1:1
ctl_usage --m5s-admin stats --m5s-admin
ctl_usage --bogus stats --bogus
ctl_usage extra stats extra
"$M5CTL" stats --help | grep -q -- --m5s-admin || m5s_fail "m5ctl stats --help"
"$M5CTL" --help | grep -q '^  stats ' || m5s_fail "m5ctl --help does not list stats"
PORT=$(pick_port)
rc=0
"$M5CTL" stats --m5s-admin "http://127.0.0.1:$PORT" >ctl.out 2>ctl.err || rc=$?
[[ $rc == 1 ]] || m5s_fail "m5ctl stats against a closed port: exit $rc, want 1"
grep -q 'cannot reach' ctl.err || m5s_fail "m5ctl stats against a closed port: $(cat ctl.err)"

stop_m5s
stop_aanf
echo "PASS test_metrics"
