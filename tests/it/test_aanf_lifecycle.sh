#!/usr/bin/env bash
# m5-aanf as a process: --help/--version, clear start-up errors, AKMA contexts surviving a
# restart (SQLite), SIGTERM draining to exit 0 within 5 s even with an idle HTTP/2 connection
# open, and `m5ctl subscriber add`'s exit codes (2 usage, 1 refusal or unreachable AAnF).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

AANF="$M5_BIN/m5-aanf"
M5CTL="$M5_BIN/m5ctl"
SUPI=001010123456789
KAUSF=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f

"$AANF" --help | grep -q "kaf.lifetime_s" || fail "--help does not list the config keys"
"$AANF" --version | grep -q "^m5-aanf " || fail "--version"

# expect_startup_error NAME PATTERN [YAML lines...]: exit 1 and a message matching PATTERN.
expect_startup_error() {
  local name=$1 pattern=$2 rc=0
  shift 2
  write_aanf_config "$name.yaml" "$@"
  timeout 10 "$AANF" --config "$name.yaml" >"$name.err" 2>&1 || rc=$?
  [[ $rc -eq 1 ]] || fail "$name: exit $rc, want 1: $(cat "$name.err")"
  grep -q -- "$pattern" "$name.err" || fail "$name: message lacks '$pattern': $(cat "$name.err")"
}

# Before the PKI exists: the certificate error says what to do.
expect_startup_error no_pki "m5ctl pki init"
make_pki
expect_startup_error unknown_key "lifetme" "kaf: {lifetme: 5}"
expect_startup_error public_mgmt "mgmt.host" "mgmt: {host: 0.0.0.0}"
expect_startup_error bad_af "afs.allowed" "afs: {allowed: [bad_name.]}"
rc=0
"$AANF" --bogus >bogus.err 2>&1 || rc=$?
[[ $rc -eq 2 ]] && grep -q -- "--bogus" bogus.err || fail "unknown argument: rc=$rc"

start_aanf

# A second daemon on the same port is refused (the workers' SO_REUSEPORT would let it share).
taken=$AANF_PORT
AANF_DB="$M5_TMP/other/aanf.db" write_aanf_config clash.yaml
sed -i "s/^listen: .*/listen: {host: 127.0.0.1, port: $taken}/" clash.yaml
rc=0
timeout 10 "$AANF" --config clash.yaml >clash.err 2>&1 || rc=$?
[[ $rc -eq 1 ]] && grep -q "listen.host/listen.port.*already in use" clash.err ||
  fail "a second daemon on port $taken: rc=$rc $(cat clash.err)"
AANF_PORT=$taken

# --- m5ctl subscriber add exit codes ---
rc=0; "$M5CTL" subscriber add --kausf "$KAUSF" 2>u1.err || rc=$?
[[ $rc -eq 2 ]] && grep -q -- "--supi" u1.err || fail "missing --supi: rc=$rc $(cat u1.err)"
rc=0; "$M5CTL" subscriber add --supi "$SUPI" --kausf abcd 2>u2.err || rc=$?
[[ $rc -eq 2 ]] && grep -q -- "--kausf" u2.err || fail "short --kausf: rc=$rc"
[[ $(wc -l <u2.err) -eq 1 ]] || fail "usage error is not one line: $(cat u2.err)"
rc=0; "$M5CTL" subscriber add --supi "$SUPI" --kausf "$KAUSF" --aanf "http://localhost:1" \
  2>u3.err || rc=$?
[[ $rc -eq 2 ]] && grep -q -- "--aanf" u3.err || fail "http:// AAnF URL: rc=$rc"
rc=0; "$M5CTL" subscriber add --supi "$SUPI" --kausf "$KAUSF" --realm a.b --mnc-len 3 \
  2>u4.err || rc=$?
[[ $rc -eq 2 ]] || fail "--realm with --mnc-len: rc=$rc"
# Refused: a PKI directory whose "AUSF" certificate is the AF's, so the role check says no.
mkdir -p notausf
cp pki/ca.crt notausf/
cp pki/m5s.crt notausf/ausf.crt
cp pki/m5s.key notausf/ausf.key
rc=0; "$M5CTL" subscriber add --supi "$SUPI" --kausf "$KAUSF" --aanf "$AANF_URL" \
  --pki notausf >r.out 2>r.err || rc=$?
[[ $rc -eq 1 ]] || fail "refused registration: rc=$rc"
grep -q "403 Forbidden" r.err && grep -q "ROLE_NOT_ALLOWED" r.err ||
  fail "refusal does not show the ProblemDetails: $(cat r.err)"
[[ ! -s r.out ]] || fail "refusal printed on stdout: $(cat r.out)"
# Unreachable AAnF: exit 1 naming the URL.
dead=$(pick_port)
rc=0; "$M5CTL" subscriber add --supi "$SUPI" --kausf "$KAUSF" --aanf "https://localhost:$dead" \
  --pki pki 2>d.err || rc=$?
[[ $rc -eq 1 ]] && grep -q "localhost:$dead" d.err || fail "unreachable AAnF: rc=$rc $(cat d.err)"

# --- state survives a restart ---
"$M5CTL" subscriber add --supi "$SUPI" --kausf "$KAUSF" --aanf "$AANF_URL" --pki pki >/dev/null
AKID=$("$M5CTL" akma derive --supi "$SUPI" --kausf "$KAUSF" --af-fqdn localhost |
  sed -n 's/^akid=//p')
KAF=$("$M5CTL" akma derive --supi "$SUPI" --kausf "$KAUSF" --af-fqdn localhost |
  sed -n 's/^kaf=//p')
printf '{"afId":"localhost","aKId":"%s"}' "$AKID" >get.json

# SIGTERM with an idle HTTP/2 connection held open by a client: still exit 0 within 5 s.
openssl s_client -connect "127.0.0.1:$AANF_PORT" -alpn h2 -cert pki/m5s.crt -key pki/m5s.key \
  -CAfile pki/ca.crt -quiet < <(sleep 20) >/dev/null 2>&1 &
idle=$!
track_pid "$idle"
sleep 0.5
stop_aanf
kill "$idle" 2>/dev/null || true
grep -q "SIGTERM" "$AANF_LOG" || fail "no drain line in the log"

start_aanf
st=$(aanf_post retrieve-applicationkey get.json m5s get.out)
[[ $st == 200 ]] || fail "after restart: $st"
[[ $(json_get get.out kaf) == "$KAF" ]] || fail "after restart: another K_AF"
[[ $(stat -c %a "$M5_TMP/aanf") == 700 ]] || fail "database directory is not owner-only"
[[ $(stat -c %a "$M5_TMP/aanf/aanf.db") == 600 ]] || fail "database file is not owner-only"
# K_AKMA is stored in binary, never as the hex text that travelled on the wire.
KAKMA=$("$M5CTL" akma derive --supi "$SUPI" --kausf "$KAUSF" --af-fqdn localhost |
  sed -n 's/^kakma=//p')
if grep -qi "$KAKMA" "$M5_TMP/aanf/aanf.db"*; then fail "K_AKMA hex in the database files"; fi

# SIGINT drains like SIGTERM.
kill -INT "$AANF_PID"
rc=0
for ((i = 0; i < 50; i++)); do kill -0 "$AANF_PID" 2>/dev/null || break; sleep 0.1; done
wait "$AANF_PID" || rc=$?
[[ $rc -eq 0 ]] || fail "SIGINT: exit $rc"
echo "aanf lifecycle: ok"
