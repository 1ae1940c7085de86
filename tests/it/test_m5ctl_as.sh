#!/usr/bin/env bash
# Integration: `m5ctl as add` / `m5ctl as remove` (src/tools/ctl_as.c) against a real m5s's
# management port (/admin/v1/as-clients/{asSvcId}, docs/admin-api.md):
#  - add -> "created", again -> "updated", each with the targets as m5s stored them, which GET
#    then shows; the AS added gets a northbound token, once removed it does not;
#  - remove -> "removed" and GET 404; removing it again exits 1 with one line (404 and detail);
#  - usage errors exit 2 with one stderr line naming the argument and send nothing;
#  - m5s not listening at --m5s-admin exits 1 with one line saying so.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

M5CTL="$M5_BIN/m5ctl"
make_pki
timeout 60 "$M5CTL" pki issue --as-svc-id as1 --dir "$M5_TMP/pki" >/dev/null
start_aanf
start_m5s

# ctl ARGS...: m5ctl -> $RC, ctl.out, ctl.err
ctl() {
  RC=0
  timeout 30 "$M5CTL" "$@" >ctl.out 2>ctl.err || RC=$?
}
# ok LINE ARGS...: m5ctl exits 0 printing exactly LINE and nothing on stderr.
ok() {
  local want=$1
  shift
  ctl "$@"
  [[ $RC == 0 && ! -s ctl.err ]] || m5s_fail "m5ctl $*: exit $RC: $(cat ctl.err)"
  [[ $(cat ctl.out) == "$want" ]] || m5s_fail "m5ctl $*: printed '$(cat ctl.out)', want '$want'"
}
# refused RC TEXT ARGS...: m5ctl exits RC with one stderr line containing TEXT, no stdout.
refused() {
  local rc=$1 text=$2
  shift 2
  ctl "$@"
  [[ $RC == "$rc" ]] || m5s_fail "m5ctl $*: exit $RC, want $rc ($(cat ctl.err))"
  if [[ $(wc -l <ctl.err) != 1 ]] || ! grep -qF -- "$text" ctl.err; then
    m5s_fail "m5ctl $*: want one stderr line with '$text': $(cat ctl.err)"
  fi
  [[ ! -s ctl.out ]] || m5s_fail "m5ctl $*: unexpected stdout $(cat ctl.out)"
}
# get ID: GET the AS client -> $ST, body in get.json
get() {
  ST=$(admin_curl -s --max-time 5 -o get.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/as-clients/$1")
}
# targets_are ID LIST: GET shows the AS client with exactly these targets (comma-separated).
targets_are() {
  get "$1"
  [[ $ST == 200 ]] || m5s_fail "GET $1: HTTP $ST $(cat get.json)"
  [[ $(json_get get.json targets) == "$2" ]] || m5s_fail "GET $1: want targets $2: $(cat get.json)"
}
# token_status: the HTTP status of a token request on the northbound port with as1's certificate
token_status() {
  curl -s --http2 --max-time 10 --cacert "$M5_TMP/pki/ca.crt" --cert "$M5_TMP/pki/as-as1.crt" \
    --key "$M5_TMP/pki/as-as1.key" -o token.json -w '%{http_code}' \
    -d grant_type=client_credentials "https://localhost:$M5S_NORTH/oauth2/token" || true
}
A=(--m5s-admin "$M5S_ADMIN")

# ---- add, update, remove ---------------------------------------------------------------------
[[ $(token_status) == 401 ]] || m5s_fail "a token for as1 before it was added: $(cat token.json)"
ok "as1: created, targets as1.example:9443 127.0.0.1:9443" \
  as add --as-svc-id as1 --target AS1.example:9443 --target 127.0.0.1:9443 "${A[@]}"
targets_are as1 "as1.example:9443,127.0.0.1:9443"
[[ $(token_status) == 200 ]] || m5s_fail "no token for as1 once added: $(cat token.json)"
ok "as1: updated, targets [::1]:8443" as add "${A[@]}" --target '[::1]:8443' --as-svc-id as1
targets_are as1 "[::1]:8443"
ok "as1: removed" as remove --as-svc-id as1 "${A[@]}"
get as1
[[ $ST == 404 ]] || m5s_fail "GET as1 after remove: HTTP $ST $(cat get.json)"
[[ $(token_status) == 401 ]] || m5s_fail "a token for as1 after its removal: $(cat token.json)"
refused 1 "404 no AS client with this asSvcId" as remove --as-svc-id as1 "${A[@]}"
echo "ok: created, updated, removed; GET and the token endpoint agree; removing again exits 1"

# The most targets, long enough that the body passes 1 KiB; one more is a usage error.
many=()
list=""
for i in $(seq -w 1 16); do
  t="t$i.a-rather-long-name-for-an-application-server-host.example:$((9000 + 10#$i))"
  many+=(--target "$t")
  list+="${list:+,}$t"
done
ok "max: created, targets ${list//,/ }" as add --as-svc-id max "${many[@]}" "${A[@]}"
targets_are max "$list"
refused 2 "--target: at most 16" as add --as-svc-id max "${many[@]}" --target x.example:1 "${A[@]}"
targets_are max "$list"
echo "ok: 16 targets (a body over 1 KiB); a 17th refused"

# ---- usage errors: one line naming the argument, nothing sent ------------------------------------
ok "keep: created, targets keep.example:443" \
  as add --as-svc-id keep --target keep.example:443 "${A[@]}"
refused 2 "--as-svc-id" as add --as-svc-id 'a b' --target x.example:1 "${A[@]}"
refused 2 "--as-svc-id" as add --as-svc-id urn:msgin5g:as:fresh --target x.example:1 "${A[@]}"
refused 2 "--as-svc-id" as add --as-svc-id "$(printf 'a%.0s' {1..65})" --target x.example:1 "${A[@]}"
refused 2 "--as-svc-id: given twice" as add --as-svc-id keep --as-svc-id fresh \
  --target x.example:1 "${A[@]}"
refused 2 "--as-svc-id: required" as add --target x.example:1 "${A[@]}"
refused 2 "--target: 'keep.example': no port" as add --as-svc-id keep --target keep.example "${A[@]}"
refused 2 "--target: 'keep.example:0'" as add --as-svc-id keep --target keep.example:0 "${A[@]}"
refused 2 "--target: 'keep.example:65536'" as add --as-svc-id keep \
  --target keep.example:65536 "${A[@]}"
refused 2 "--target: 'https://keep.example:1'" as add --as-svc-id keep \
  --target https://keep.example:1 "${A[@]}"
refused 2 "--target: '[nope]:1'" as add --as-svc-id keep --target '[nope]:1' "${A[@]}"
refused 2 "--target: 'keep.example:1/x'" as add --as-svc-id keep --target keep.example:1/x "${A[@]}"
refused 2 "--target: required" as add --as-svc-id keep "${A[@]}"
refused 2 "--bogus: unknown option" as add --as-svc-id fresh --target x.example:1 --bogus "${A[@]}"
refused 2 "--target" as remove --as-svc-id keep --target x.example:1 "${A[@]}"
refused 2 "--as-svc-id: required" as remove "${A[@]}"
refused 2 "extra: unexpected argument" as remove --as-svc-id keep extra "${A[@]}"
refused 2 "--m5s-admin" as remove --as-svc-id keep --m5s-admin ftp://127.0.0.1:1
refused 2 "--m5s-admin: missing value" as remove --as-svc-id keep --m5s-admin
targets_are keep "keep.example:443"
get fresh
[[ $ST == 404 ]] || m5s_fail "a refused command created fresh: HTTP $ST $(cat get.json)"
echo "ok: usage errors exit 2 with one line and change nothing"

# ---- help ------------------------------------------------------------------------------------
"$M5CTL" --help | grep -q '^  as add --as-svc-id ID --target HOST:PORT' ||
  m5s_fail "m5ctl --help does not list as add"
"$M5CTL" --help | grep -q '^  as remove --as-svc-id ID' ||
  m5s_fail "m5ctl --help does not list as remove"
"$M5CTL" as add --help | grep -q -- '--target HOST:PORT' || m5s_fail "m5ctl as add --help"

# ---- m5s not there -----------------------------------------------------------------------------
stop_m5s
for cmd in "add --target x.example:1" remove; do
  # shellcheck disable=SC2086 # cmd is the words of the subcommand
  refused 1 "cannot reach the m5s admin API" as $cmd --as-svc-id keep "${A[@]}"
  grep -q "is m5s running (--m5s-admin)?" ctl.err || m5s_fail "as $cmd, m5s down: $(cat ctl.err)"
done
stop_aanf
echo "ok: m5s not running exits 1 with one line"
echo "PASS test_m5ctl_as"
