#!/usr/bin/env bash
# Integration: `m5ctl subscriber import FILE` against the real m5-aanf and m5s
# (docs/operations.md, "m5ctl subscriber import"):
#  - bad files (a non-hex K_AUSF, a missing field, a duplicated ueSvcId and SUPI, an extra
#    field) are refused whole with exit 2 and FILE:LINE errors in line order, a wrong management
#    token and an m5s that is not there with exit 1 and one line, and nothing was sent: the
#    AAnF's and m5s's tables are still empty and the AAnF's log names no request;
#  - a fleet of M5_IMPORT_N (default 10,000) random subscribers is imported (exit 0, the
#    summary line; the time taken and the rate are logged, not asserted): the AAnF holds
#    exactly that many AKMA contexts and m5s that many bindings (their SQLite tables, read with
#    sqlite3: the admin API has no bindings figure), and 3 random UEs of the file register
#    with m5c;
#  - importing the same file again is idempotent: exit 0, 0 re-bound, no binding written
#    (m5s logs no binding change);
#  - lines giving known UE Service IDs new SUPIs are counted as re-bound;
#  - a management port answering 503 with Retry-After (busy_admin.py in front of m5s refuses
#    the first PUT of every UE Service ID; 64 lines, 32 at once): each is waited out and
#    repeated, exit 0, all bound;
#  - the AAnF killed during an import: exit 1, each failed line on stderr as
#    FILE:LINE: ueSvcId: error, the lines that succeeded are bound and the failed ones are not;
#    with the AAnF back, the same file again completes the fleet (exit 0).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
N=${M5_IMPORT_N:-10000}
CTL=("$M5_BIN/m5ctl")
AANF_DB="$M5_TMP/aanf/aanf.db"
M5S_DB="$M5_TMP/m5s/m5s.db"

make_pki
start_aanf
start_m5s

# import FILE [ARGS...]: m5ctl subscriber import against the running daemons; stdout in
# $M5_TMP/imp.out, stderr in $M5_TMP/imp.err, exit status in IMP_RC.
import() {
  local file=$1
  shift
  IMP_RC=0
  timeout 240 "${CTL[@]}" subscriber import "$file" --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" \
    --pki "$M5_TMP/pki" "$@" >"$M5_TMP/imp.out" 2>"$M5_TMP/imp.err" || IMP_RC=$?
}
aanf_count() { sqlite3 "$AANF_DB" 'SELECT count(*) FROM akma_ctx'; }
bindings_count() { sqlite3 "$M5S_DB" 'SELECT count(*) FROM bindings'; }
bound_supi() { sqlite3 "$M5S_DB" "SELECT supi FROM bindings WHERE ue_svc_id = '$1'"; }

# gen FILE COUNT PREFIX SEED: COUNT lines "SUPI K_AUSF PREFIX-i", SUPIs distinct and random.
gen() {
  $PY - "$@" <<'EOF'
import random, sys
path, n, prefix, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rnd = random.Random(seed)
supis = set()
with open(path, "w") as f:
    f.write("# supi kausf ueSvcId\n\n")
    for i in range(n):
        while True:
            s = "00101" + "%010d" % rnd.randrange(10**10)
            if s not in supis:
                break
        supis.add(s)
        f.write("%s %064x %s-%d\n" % (s, rnd.getrandbits(256), prefix, i))
EOF
}

# ---- bad files: refused whole, nothing sent ----------------------------------------------
K=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
cat >"$M5_TMP/bad.txt" <<EOF
# a fleet with mistakes
001010000000001 $K bad-1
001010000000002 ${K:0:63}x bad-2
001010000000003 $K
001010000000004 $K bad-1
001010000000001 $K bad-5

001010000000006 $K bad-6 extra
001010000000007 $K bad-7
EOF
import "$M5_TMP/bad.txt"
[[ $IMP_RC == 2 ]] || m5s_fail "bad file: exit $IMP_RC, want 2: $(cat "$M5_TMP/imp.err")"
B="$M5_TMP/bad.txt"
cat >"$M5_TMP/want.err" <<EOF
$B:3: kausf: expected 64 hex digits, found a non-hex character
$B:4: missing ueSvcId (expected: SUPI K_AUSF ueSvcId)
$B:5: ueSvcId bad-1 given twice (first on line 2)
$B:6: supi 001010000000001 given twice (first on line 2)
$B:8: unexpected fourth field (expected: SUPI K_AUSF ueSvcId; '#' starts a comment)
m5ctl: $B: refused (5 bad lines); nothing was sent
EOF
diff "$M5_TMP/want.err" "$M5_TMP/imp.err" >&2 || m5s_fail "bad file: errors differ (above)"
[[ ! -s $M5_TMP/imp.out ]] || fail "bad file: printed $(cat "$M5_TMP/imp.out")"
grep -q "$K\|${K:0:63}" "$M5_TMP/imp.err" && fail "bad file: a K_AUSF in the errors"
# the same through stdin, named -
IMP_RC=0
"${CTL[@]}" subscriber import - --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" --pki "$M5_TMP/pki" \
  <"$B" >/dev/null 2>"$M5_TMP/imp.err" || IMP_RC=$?
if [[ $IMP_RC != 2 ]] ||
  ! grep -qx -- "-:3: kausf: expected 64 hex digits, found a non-hex character" "$M5_TMP/imp.err"; then
  fail "bad stdin: exit $IMP_RC: $(cat "$M5_TMP/imp.err")"
fi
# m5s refusing the token, or not there: one line, exit 1, nothing sent to the AAnF either
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$M5_TMP/wrong.token"
chmod 600 "$M5_TMP/wrong.token"
head -2 "$B" >"$M5_TMP/good.txt" # the comment and line 2, good
import "$M5_TMP/good.txt" --admin-token "$M5_TMP/wrong.token"
if [[ $IMP_RC != 1 || $(wc -l <"$M5_TMP/imp.err") != 2 ]] ||
  ! grep -q "^m5ctl: m5s refused to read the binding of bad-1: 401 .*is --admin-token the token file" \
    "$M5_TMP/imp.err" || ! grep -qx "m5ctl: $M5_TMP/good.txt: nothing was sent" "$M5_TMP/imp.err"; then
  fail "a refused token: exit $IMP_RC: $(cat "$M5_TMP/imp.err")"
fi
IMP_RC=0
"${CTL[@]}" subscriber import "$M5_TMP/good.txt" --aanf "$AANF_URL" --pki "$M5_TMP/pki" \
  --m5s-admin "http://127.0.0.1:$(pick_port)" >/dev/null 2>"$M5_TMP/imp.err" || IMP_RC=$?
if [[ $IMP_RC != 1 ]] || ! grep -q "^m5ctl: cannot reach the m5s admin API" "$M5_TMP/imp.err"; then
  fail "m5s not there: exit $IMP_RC: $(cat "$M5_TMP/imp.err")"
fi
[[ $(aanf_count) == 0 && $(bindings_count) == 0 ]] ||
  fail "a refused file changed the AAnF ($(aanf_count)) or m5s ($(bindings_count))"
grep -q register-anchorkey "$AANF_LOG" && fail "a refused file reached the AAnF"
grep -Eq "binding (created|updated)" "$M5S_LOG" && m5s_fail "a refused file changed a binding in m5s"
echo "bad files refused, nothing sent"

# ---- the fleet -------------------------------------------------------------------------------
FLEET="$M5_TMP/fleet.txt"
gen "$FLEET" "$N" fleet "$RANDOM"
t0=$(now_ms)
import "$FLEET"
ms=$(($(now_ms) - t0))
[[ $IMP_RC == 0 ]] || m5s_fail "import of $N: exit $IMP_RC: $(head -5 "$M5_TMP/imp.err")"
echo "imported $N subscribers in $ms ms ($((N * 1000 / (ms > 0 ? ms : 1))) a second; not asserted):" \
  "$(cat "$M5_TMP/imp.out")"
grep -Eqx "imported $N subscribers \(0 re-bound, 0 failed deliveries\) in [0-9]+\.[0-9] s" \
  "$M5_TMP/imp.out" || fail "summary: $(cat "$M5_TMP/imp.out")"
[[ ! -s $M5_TMP/imp.err ]] || fail "import printed on stderr: $(head -5 "$M5_TMP/imp.err")"
[[ $(aanf_count) == "$N" ]] || fail "the AAnF holds $(aanf_count) AKMA contexts, want $N"
[[ $(bindings_count) == "$N" ]] || fail "m5s holds $(bindings_count) bindings, want $N"

# 3 random UEs of the file register (AKMA with the imported keys, the binding in m5s)
mapfile -t SAMPLE < <(grep -v '^#' "$FLEET" | grep . | shuf -n 3)
for line in "${SAMPLE[@]}"; do
  read -r supi kausf id <<<"$line"
  m5c_config "$id" "$supi" "$kausf"
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$id.yaml" --server "$(m5c_uri dtls)" register \
    >"$M5_TMP/reg.out" 2>&1 || m5s_fail "$id (imported) cannot register: $(cat "$M5_TMP/reg.out")"
  grep -q "\"ueSvcId\":\"$id\"" "$M5_TMP/reg.out" || fail "$id: register said $(cat "$M5_TMP/reg.out")"
done
echo "3 imported UEs registered: ${SAMPLE[*]%% *}"

# ---- the same file again: idempotent -----------------------------------------------------
changes=$(m5s_log_count "binding (created|updated)")
t0=$(now_ms)
import "$FLEET"
echo "re-import of $N took $(($(now_ms) - t0)) ms: $(cat "$M5_TMP/imp.out")"
[[ $IMP_RC == 0 ]] || m5s_fail "re-import: exit $IMP_RC: $(head -5 "$M5_TMP/imp.err")"
grep -Eqx "imported $N subscribers \(0 re-bound, 0 failed deliveries\) in [0-9.]+ s" \
  "$M5_TMP/imp.out" || fail "re-import summary: $(cat "$M5_TMP/imp.out")"
[[ $(m5s_log_count "binding (created|updated)") == "$changes" ]] ||
  m5s_fail "re-importing the same file changed bindings"
[[ $(aanf_count) == "$N" && $(bindings_count) == "$N" ]] || fail "re-import changed the counts"

# ---- re-bound: known UE Service IDs with new SUPIs -----------------------------------------
gen "$M5_TMP/rebind.txt" 5 fleet "$RANDOM-rebind" # fleet-0 .. fleet-4 with other SUPIs
new0=$(awk '$3 == "fleet-0" {print $1}' "$M5_TMP/rebind.txt")
import "$M5_TMP/rebind.txt"
[[ $IMP_RC == 0 ]] || m5s_fail "re-bind import: exit $IMP_RC: $(cat "$M5_TMP/imp.err")"
grep -Eqx "imported 5 subscribers \(5 re-bound, [0-9]+ failed deliveries\) in [0-9.]+ s" \
  "$M5_TMP/imp.out" || fail "re-bind summary: $(cat "$M5_TMP/imp.out")"
[[ $(bound_supi fleet-0) == "$new0" ]] || fail "fleet-0 bound to $(bound_supi fleet-0), want $new0"
[[ $(bindings_count) == "$N" ]] || fail "re-binding changed the number of bindings: $(bindings_count)"
CTX=$((N + 5)) # the AAnF keeps the old SUPIs' contexts besides the 5 new ones
[[ $(aanf_count) == "$CTX" ]] || fail "the AAnF holds $(aanf_count) contexts, want $CTX"

# ---- 503 Retry-After from the management port: waited out, not a failure ------------------
$PY "$M5_SRC/tests/it/busy_admin.py" "$M5_TMP/busy.port" "$M5S_MGMT" &
BUSY_PID=$!
track_pid "$BUSY_PID"
wait_file_line "$M5_TMP/busy.port" '^[0-9]+$' 10 "$BUSY_PID" || fail "busy_admin.py did not start"
BUSY="http://127.0.0.1:$(<"$M5_TMP/busy.port")"
gen "$M5_TMP/busy.txt" 64 busy "$RANDOM-busy"
IMP_RC=0
timeout 120 "${CTL[@]}" subscriber import "$M5_TMP/busy.txt" --aanf "$AANF_URL" --pki "$M5_TMP/pki" \
  --m5s-admin "$BUSY" --parallel 32 >"$M5_TMP/imp.out" 2>"$M5_TMP/imp.err" || IMP_RC=$?
refused=$(curl -s --max-time 10 -X POST "$BUSY/refused")
kill "$BUSY_PID"
echo "503 stand-in: refused $refused PUTs; $(cat "$M5_TMP/imp.out")"
[[ $IMP_RC == 0 ]] || fail "import through 503s: exit $IMP_RC: $(head -3 "$M5_TMP/imp.err")"
[[ $refused == 64 ]] || fail "the stand-in refused $refused PUTs, want 64"
grep -Eqx "imported 64 subscribers \(0 re-bound, 0 failed deliveries\) in [0-9.]+ s" \
  "$M5_TMP/imp.out" || fail "503 summary: $(cat "$M5_TMP/imp.out")"
[[ $(bindings_count) == $((N + 64)) ]] || fail "after the 503s: $(bindings_count) bindings"
N=$((N + 64))
CTX=$((CTX + 64))

# ---- the AAnF killed in the middle -------------------------------------------------------
PART="$M5_TMP/part.txt"
M=$((N / 5 > 1000 ? N / 5 : 1000))
gen "$PART" "$M" part "$RANDOM-part"
before=$(aanf_count)
IMP_RC=0
"${CTL[@]}" subscriber import "$PART" --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" \
  --pki "$M5_TMP/pki" >"$M5_TMP/imp.out" 2>"$M5_TMP/imp.err" &
IMP_PID=$!
track_pid "$IMP_PID"
for ((i = 0; i < 600; i++)); do
  (($(aanf_count) - before >= 50)) && break
  sleep 0.02
done
kill -KILL "$AANF_PID"
wait "$AANF_PID" 2>/dev/null || true
wait_pid_rc "$IMP_PID" 120
[[ $WAIT_RC == 1 ]] || m5s_fail "import with the AAnF killed: exit $WAIT_RC, want 1: $(cat "$M5_TMP/imp.out")"
failed=$(grep -Ec "^$PART:[0-9]+: part-[0-9]+: " "$M5_TMP/imp.err" || true)
ok=$(sed -En 's/^imported ([0-9]+) subscribers .*/\1/p' "$M5_TMP/imp.out")
echo "AAnF killed: $ok imported, $failed failed: $(grep -m1 "^$PART:" "$M5_TMP/imp.err")"
((failed > 0 && ok >= 1 && ok + failed == M)) ||
  fail "want every line imported or reported ($ok + $failed != $M): $(tail -3 "$M5_TMP/imp.err")"
grep -Eq "^$PART:[0-9]+: part-[0-9]+: cannot register at the AAnF https://localhost:$AANF_PORT/" \
  "$M5_TMP/imp.err" || fail "failed lines do not say why: $(head -3 "$M5_TMP/imp.err")"
grep -qx "m5ctl: $PART: $failed of $M lines failed (listed above); the others are provisioned" \
  "$M5_TMP/imp.err" || fail "no count of the failed lines: $(tail -1 "$M5_TMP/imp.err")"
# the failed lines are not bound, the others are
[[ $(bindings_count) == $((N + ok)) ]] || fail "m5s holds $(bindings_count) bindings, want $((N + ok))"
$PY - "$PART" "$M5_TMP/imp.err" "$M5S_DB" <<'EOF' || fail "failed lines and bindings disagree"
import re, sqlite3, sys
part, err, db = sys.argv[1:]
failed = {m.group(1) for m in re.finditer(r"^" + re.escape(part) + r":\d+: (part-\d+): ",
                                          open(err).read(), re.M)}
bound = {r[0] for r in sqlite3.connect(db).execute("SELECT ue_svc_id FROM bindings")}
ids = [l.split()[2] for l in open(part) if l.strip() and not l.startswith("#")]
bad = [i for i in ids if (i in failed) == (i in bound)]
assert not bad, bad[:5]
EOF
# the AAnF back: the same file completes the fleet
start_aanf
import "$PART"
[[ $IMP_RC == 0 ]] || m5s_fail "import after the AAnF restart: exit $IMP_RC: $(head -3 "$M5_TMP/imp.err")"
grep -Eqx "imported $M subscribers \(0 re-bound, 0 failed deliveries\) in [0-9.]+ s" \
  "$M5_TMP/imp.out" || fail "completing summary: $(cat "$M5_TMP/imp.out")"
[[ $(bindings_count) == $((N + M)) && $(aanf_count) == $((CTX + M)) ]] ||
  fail "after completing: $(aanf_count) contexts, $(bindings_count) bindings, want $((CTX + M)), $((N + M))"
echo "the failed lines completed once the AAnF was back"

stop_m5s
stop_aanf
echo "PASS"
