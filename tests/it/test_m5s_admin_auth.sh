#!/usr/bin/env bash
# Integration: the management port's bearer token (docs/admin-api.md, "Authentication"; issue 9
# point 5). m5s writes mgmt.token_file at its first start (mode 0600 in a 0700 directory, 64
# hex digits) and keeps it across restarts; every admin request but GET /healthz, /metrics and
# /admin/v1/stats needs "Authorization: Bearer <token>": without it, with a wrong token of the
# same length or of another length, or another scheme, the answer is 401 (WWW-Authenticate:
# Bearer, ProblemDetails) and nothing changed (the binding and the AS client read back as
# before), over HTTP/1.1 and h2c alike; the token never reaches the log; m5ctl finds the token
# by --admin-token, by $M5_ADMIN_TOKEN_FILE and by its default path, in that order, and says
# what to do when it cannot; m5s refuses a token file of a wider mode or of malformed content,
# and a management address off loopback.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

M5CTL="$M5_BIN/m5ctl"
make_pki
start_aanf
start_m5s

# ---- the file ---------------------------------------------------------------------------------
[[ -f $M5S_TOKEN_FILE ]] || m5s_fail "no token file at $M5S_TOKEN_FILE"
[[ $(stat -c %a "$M5S_TOKEN_FILE") == 600 ]] ||
  m5s_fail "token file mode $(stat -c %a "$M5S_TOKEN_FILE"), want 600"
[[ $(stat -c %a "$(dirname "$M5S_TOKEN_FILE")") == 700 ]] ||
  m5s_fail "token directory mode $(stat -c %a "$(dirname "$M5S_TOKEN_FILE")"), want 700"
TOKEN=$(<"$M5S_TOKEN_FILE")
[[ $TOKEN =~ ^[0-9a-f]{64}$ ]] || m5s_fail "token file content is not 64 hex digits: '$TOKEN'"
[[ $(wc -l <"$M5S_TOKEN_FILE") == 1 ]] || m5s_fail "token file is not one line"
grep -q "wrote a new management token to var/m5s/admin.token" "$M5S_LOG" ||
  m5s_fail "m5s did not log that it wrote the token file"

# ---- state to protect: a binding and an AS client, set with the token -------------------------
SUPI_A=001010000000111
SUPI_B=001010000000222
setup_ue ue1 "$SUPI_A" 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
ST=$(admin_curl -s -o put.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"targets":["127.0.0.1:9"]}' "$M5S_ADMIN/admin/v1/as-clients/as1")
[[ $ST == 201 ]] || m5s_fail "PUT as1 with the token: HTTP $ST $(cat put.json)"

AS1_TARGETS=127.0.0.1:9
# unchanged WHAT: the binding still names SUPI_A, as1 still has the targets AS1_TARGETS.
unchanged() {
  local st
  st=$(admin_curl -s -o b.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/bindings/ue1")
  [[ $st == 200 && $(json_get b.json supi) == "$SUPI_A" ]] ||
    m5s_fail "$1: the binding changed: HTTP $st $(cat b.json)"
  st=$(admin_curl -s -o b.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/bindings/ue1%00x")
  [[ $st == 400 ]] || m5s_fail "GET bindings/ue1%00x: HTTP $st, want 400 (not ue1's binding)"
  st=$(admin_curl -s -o a.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/as-clients/as1")
  [[ $st == 200 && $(json_get a.json targets) == "$AS1_TARGETS" ]] ||
    m5s_fail "$1: the AS client changed: HTTP $st $(cat a.json)"
}

# refused WHAT [curl args]: a re-bind, a wider allow-list, a removal and a read, each 401 with
# the Bearer challenge and a ProblemDetails; then nothing changed.
refused() {
  local what=$1 st m
  shift
  for m in "PUT /admin/v1/bindings/ue1 {\"supi\":\"$SUPI_B\"}" \
    'PUT /admin/v1/as-clients/as1 {"targets":["127.0.0.1:9","evil.example:443"]}' \
    'DELETE /admin/v1/bindings/ue1' 'DELETE /admin/v1/as-clients/as1' \
    'GET /admin/v1/bindings/ue1' 'GET /admin/v1/as-clients/as1' 'GET /admin/v1/nothing-here'; do
    read -r method path body <<<"$m"
    local args=(-s --max-time 5 -D hdr.txt -o out.json -w '%{http_code}' -X "$method" "$@")
    [[ -z $body ]] || args+=(-H 'content-type: application/json' --data-binary "$body")
    st=$(curl "${args[@]}" "$M5S_ADMIN$path")
    [[ $st == 401 ]] || m5s_fail "$what: $method $path: HTTP $st, want 401: $(cat out.json)"
    grep -qi '^www-authenticate: Bearer realm="m5s-admin"' hdr.txt ||
      m5s_fail "$what: $method $path: no Bearer challenge: $(cat hdr.txt)"
    grep -qi '^content-type: application/problem+json' hdr.txt ||
      m5s_fail "$what: $method $path: not a problem+json: $(cat hdr.txt)"
    [[ $(json_get out.json status) == 401 ]] || m5s_fail "$what: body $(cat out.json)"
    unchanged "$what: $method $path"
  done
}

WRONG=$(printf '%s' "$TOKEN" | tr '0-9a-f' '1-9a-f0') # same length, every digit different
refused "no Authorization header"
refused "a wrong token of the same length" -H "authorization: Bearer $WRONG"
grep -qi '^www-authenticate: Bearer realm="m5s-admin", error="invalid_token"' hdr.txt ||
  m5s_fail "a wrong token's challenge lacks error=invalid_token: $(cat hdr.txt)"
refused "the token without its last digit" -H "authorization: Bearer ${TOKEN:0:63}"
refused "the token and one more digit" -H "authorization: Bearer ${TOKEN}0"
refused "an empty bearer" -H "authorization: Bearer "
refused "the token under another scheme" -H "authorization: Basic $TOKEN"
refused "h2c without a token" --http2-prior-knowledge
echo "ok: 401 and nothing changed without, with a wrong, a shorter, a longer token, over h1 and h2c"

# ---- the right token works, over HTTP/1.1 and h2c, whatever the scheme's case --------------
for v in "Bearer $TOKEN" "bearer $TOKEN"; do
  ST=$(curl -s -o put.json -w '%{http_code}' -X PUT -H "authorization: $v" \
    -H 'content-type: application/json' -d '{"targets":["127.0.0.1:9","as1.example:443"]}' \
    "$M5S_ADMIN/admin/v1/as-clients/as1")
  [[ $ST == 200 ]] || m5s_fail "PUT as1 with '${v%% *} <token>': HTTP $ST $(cat put.json)"
done
AS1_TARGETS=127.0.0.1:9,as1.example:443
ST=$(curl -s --http2-prior-knowledge -o b.json -w '%{http_code}' \
  -H "authorization: Bearer $TOKEN" "$M5S_ADMIN/admin/v1/bindings/ue1")
[[ $ST == 200 ]] || m5s_fail "GET over h2c with the token: HTTP $ST $(cat b.json)"

# ---- open without a token --------------------------------------------------------------------
for path in /healthz /metrics /admin/v1/stats; do
  ST=$(curl -s -o open.out -w '%{http_code}' "$M5S_ADMIN$path")
  [[ $ST == 200 ]] || m5s_fail "GET $path without a token: HTTP $ST $(cat open.out)"
done
ST=$(curl -s -o open.out -w '%{http_code}' -X POST "$M5S_ADMIN/admin/v1/stats")
[[ $ST == 405 ]] || m5s_fail "POST /admin/v1/stats without a token: HTTP $ST, want 405 (it changes nothing)"
"$M5CTL" stats --m5s-admin "$M5S_ADMIN" >stats.out 2>stats.err ||
  m5s_fail "m5ctl stats needs no token: $(cat stats.err)"
echo "ok: the right token works; /healthz, /metrics, /admin/v1/stats are open"

# ---- m5ctl: --admin-token, then $M5_ADMIN_TOKEN_FILE, then var/m5s/admin.token ------------
ctl() { # DIR ARGS...: m5ctl run in DIR -> $RC, ctl.out, ctl.err (in $M5_TMP)
  local dir=$1
  shift
  RC=0
  (cd "$dir" && timeout 30 "$M5CTL" "$@") >ctl.out 2>ctl.err || RC=$?
}
install -m 600 "$M5S_TOKEN_FILE" "$M5_TMP/copy.token"
printf '%s\n' "$WRONG" >"$M5_TMP/wrong.token"
mkdir -p "$M5_TMP/elsewhere"
ADD=(as add --as-svc-id as2 --target 127.0.0.1:9 --m5s-admin "$M5S_ADMIN")

ctl "$M5_TMP" "${ADD[@]}" # the default path, relative to where m5s runs too
[[ $RC == 0 ]] || m5s_fail "m5ctl with the default token path: exit $RC $(cat ctl.err)"
ctl "$M5_TMP/elsewhere" "${ADD[@]}" --admin-token "$M5_TMP/copy.token"
[[ $RC == 0 ]] || m5s_fail "m5ctl --admin-token: exit $RC $(cat ctl.err)"
RC=0
(cd "$M5_TMP/elsewhere" && M5_ADMIN_TOKEN_FILE=$M5_TMP/copy.token timeout 30 "$M5CTL" "${ADD[@]}") \
  >ctl.out 2>ctl.err || RC=$?
[[ $RC == 0 ]] || m5s_fail "m5ctl with \$M5_ADMIN_TOKEN_FILE: exit $RC $(cat ctl.err)"
RC=0
(cd "$M5_TMP/elsewhere" && M5_ADMIN_TOKEN_FILE=$M5_TMP/wrong.token timeout 30 "$M5CTL" "${ADD[@]}" \
  --admin-token "$M5_TMP/copy.token") >ctl.out 2>ctl.err || RC=$?
[[ $RC == 0 ]] || m5s_fail "--admin-token must win over \$M5_ADMIN_TOKEN_FILE: exit $RC $(cat ctl.err)"
RC=0
(cd "$M5_TMP" && M5_ADMIN_TOKEN_FILE=$M5_TMP/wrong.token timeout 30 "$M5CTL" "${ADD[@]}") \
  >ctl.out 2>ctl.err || RC=$?
[[ $RC == 1 ]] && grep -q ': 401 ' ctl.err ||
  m5s_fail "\$M5_ADMIN_TOKEN_FILE must win over the default path (a wrong token: 401): exit $RC $(cat ctl.err)"
ctl "$M5_TMP/elsewhere" "${ADD[@]}"
[[ $RC == 1 ]] || m5s_fail "m5ctl without a token file: exit $RC, want 1"
grep -qF "m5ctl: cannot read admin token var/m5s/admin.token: No such file or directory; start m5s once or pass --admin-token FILE" ctl.err ||
  m5s_fail "m5ctl without a token file: $(cat ctl.err)"
ctl "$M5_TMP/elsewhere" "${ADD[@]}" --admin-token "$M5_TMP/wrong.token"
[[ $RC == 1 ]] && grep -q 'm5s refused AS client as2: 401 .*--admin-token' ctl.err ||
  m5s_fail "m5ctl with a wrong token: exit $RC $(cat ctl.err)"
ctl "$M5_TMP/elsewhere" subscriber add --supi "$SUPI_B" --kausf \
  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f --ue-svc-id ue9 \
  --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" --pki "$M5_TMP/pki" --admin-token "$M5_TMP/copy.token"
[[ $RC == 0 ]] || m5s_fail "m5ctl subscriber add --admin-token: exit $RC $(cat ctl.err)"
echo "ok: m5ctl finds the token by --admin-token, \$M5_ADMIN_TOKEN_FILE and var/m5s/admin.token"

# ---- no token in the log (debug level) -------------------------------------------------------
for t in "$TOKEN" "$WRONG" "${TOKEN:0:63}"; do
  ! grep -qF "$t" "$M5S_LOG" || m5s_fail "a token reached the m5s log"
done
grep -q 'PUT /admin/v1/bindings/ue1 refused: no Authorization header' "$M5S_LOG" ||
  m5s_fail "the refusals are not logged"

# ---- a restart keeps the token -----------------------------------------------------------------
stop_m5s
start_m5s
[[ $(<"$M5S_TOKEN_FILE") == "$TOKEN" && $(stat -c %a "$M5S_TOKEN_FILE") == 600 ]] ||
  m5s_fail "the token file changed across a restart"
unchanged "after the restart"
stop_m5s

# ---- refusals at start -----------------------------------------------------------------------
# startup_refused WHAT TEXT [YAML lines]: m5s exits non-zero before serving, naming the problem.
# (Picked again when a random port was taken meanwhile.)
startup_refused() {
  local what=$1 text=$2 rc _
  shift 2
  for _ in 1 2 3; do
    pick_ports P
    rc=0
    write_m5s_config "$M5_TMP/bad.yaml" "${@//@P@/$P}"
    timeout 20 "$M5_BIN/m5s" --config "$M5_TMP/bad.yaml" >start.out 2>&1 || rc=$?
    grep -q 'already in use' start.out || break
  done
  [[ $rc != 0 && $rc != 124 ]] || m5s_fail "$what: m5s exit $rc, want a refusal: $(cat start.out)"
  grep -qF -- "$text" start.out || m5s_fail "$what: want '$text' in: $(cat start.out)"
}
install -m 644 "$M5S_TOKEN_FILE" "$M5_TMP/wide.token"
startup_refused "a token file of mode 0644" "mgmt.token_file: $M5_TMP/wide.token has mode 0644" \
  "mgmt: {host: 127.0.0.1, port: @P@, token_file: $M5_TMP/wide.token}"
printf 'not a token\n' >"$M5_TMP/bad.token"
chmod 600 "$M5_TMP/bad.token"
startup_refused "a malformed token file" "$M5_TMP/bad.token does not hold a token" \
  "mgmt: {host: 127.0.0.1, port: @P@, token_file: $M5_TMP/bad.token}"
startup_refused "mgmt.host off loopback" "mgmt.host: '0.0.0.0' is not a loopback address" \
  "mgmt: {host: 0.0.0.0, port: @P@}"
[[ $(<"$M5_TMP/wide.token") == "$TOKEN" ]] || m5s_fail "m5s rewrote a refused token file"

echo "PASS test_m5s_admin_auth"
