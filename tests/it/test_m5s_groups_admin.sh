#!/usr/bin/env bash
# Integration: groups and broadcast areas on m5s's management port (/admin/v1/groups/{id},
# /admin/v1/areas/{id}, docs/admin-api.md) and through m5ctl group / m5ctl area
# (src/tools/ctl_group.c):
#  - every m5ctl command (create, add, remove, list, grant [--manage], revoke, delete) for
#    groups and areas, with what it prints, and what the admin API then shows;
#  - refusals: no or a wrong token (401, nothing changes), bad names and principals (400 with
#    invalidParams, a valid ProblemDetails), an AS as an area member, unknown groups and
#    members (404), wrong methods (405), a bound reached (409); m5ctl usage errors exit 2 with
#    one line and send nothing, m5s's refusals exit 1 with one line;
#  - everything survives a restart of m5s.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

M5CTL="$M5_BIN/m5ctl"
make_pki
start_aanf
start_m5s "groups: {max_members: 3, max_grants: 2}"

ctl() {
  RC=0
  timeout 30 "$M5CTL" "$@" --m5s-admin "$M5S_ADMIN" --admin-token "$M5S_TOKEN_FILE" >ctl.out 2>ctl.err || RC=$?
}
ok() { # LINE ARGS...: exit 0, exactly LINE on stdout, nothing on stderr
  local want=$1
  shift
  ctl "$@"
  [[ $RC == 0 && ! -s ctl.err ]] || m5s_fail "m5ctl $*: exit $RC: $(cat ctl.err)"
  [[ $(cat ctl.out) == "$want" ]] || m5s_fail "m5ctl $*: printed '$(cat ctl.out)', want '$want'"
}
refused() { # RC TEXT ARGS...: exit RC, one stderr line with TEXT, no stdout
  local rc=$1 text=$2
  shift 2
  ctl "$@"
  [[ $RC == "$rc" ]] || m5s_fail "m5ctl $*: exit $RC, want $rc ($(cat ctl.err))"
  if [[ $(wc -l <ctl.err) != 1 ]] || ! grep -qF -- "$text" ctl.err; then
    m5s_fail "m5ctl $*: want one stderr line with '$text': $(cat ctl.err)"
  fi
  [[ ! -s ctl.out ]] || m5s_fail "m5ctl $*: unexpected stdout $(cat ctl.out)"
}
api() { # METHOD PATH [curl args...] -> $ST, body in api.json
  local m=$1 p=$2
  shift 2
  ST=$(admin_curl -s --max-time 5 -X "$m" -o api.json -w '%{http_code}' "$@" "$M5S_ADMIN$p")
}
want() { [[ $ST == "$1" ]] || m5s_fail "want $1, got $ST: $(cat api.json)"; }
problem() { # STATUS [PARAM]: a valid ProblemDetails with that status and invalidParams[0].param
  want "$1"
  validate_sent TS29571_CommonData.yaml ProblemDetails api.json
  if [[ -n ${2:-} ]]; then
    grep -qF "\"param\":\"$2\"" api.json || m5s_fail "want invalidParams $2: $(cat api.json)"
  fi
}

# ---- authentication ---------------------------------------------------------------------------
for req in "PUT /admin/v1/groups/g1" "GET /admin/v1/groups/g1/members" \
  "PUT /admin/v1/areas/a1/members/ue:x" "DELETE /admin/v1/groups/g1/grants/as:x"; do
  st=$(curl -s -o api.json -w '%{http_code}' -X ${req% *} "$M5S_ADMIN${req#* }")
  [[ $st == 401 ]] || m5s_fail "$req without a token: $st"
  st=$(curl -s -o api.json -w '%{http_code}' -H 'authorization: Bearer nope' -X ${req% *} "$M5S_ADMIN${req#* }")
  [[ $st == 401 ]] || m5s_fail "$req with a wrong token: $st"
done
api GET /admin/v1/groups/g1
want 404 # nothing was created by the refused requests
bad_token=$M5_TMP/bad.token
echo 0000 >"$bad_token"
RC=0
timeout 30 "$M5CTL" group create g1 --m5s-admin "$M5S_ADMIN" --admin-token "$bad_token" >ctl.out 2>ctl.err || RC=$?
[[ $RC == 1 ]] && grep -q "401" ctl.err || m5s_fail "m5ctl with a wrong token: $RC $(cat ctl.err)"
echo "ok: no change without the management token"

# ---- groups through m5ctl ---------------------------------------------------------------------
ok "group fleet:north.1: created" group create fleet:north.1
ok "group fleet:north.1: exists (unchanged)" group create fleet:north.1
ok "ue:meter-1: added to group fleet:north.1" group add fleet:north.1 ue:meter-1
ok "ue:meter-1: already in group fleet:north.1" group add fleet:north.1 ue:meter-1
ok "as:as1: added to group fleet:north.1" group add fleet:north.1 as:as1
ok "ue:meter/2%x: added to group fleet:north.1" group add fleet:north.1 'ue:meter/2%x'
ok $'as:as1\nue:meter-1\nue:meter/2%x' group list fleet:north.1
refused 1 "groups.max_members" group add fleet:north.1 ue:meter-4
ok "ue:meter-1: removed from group fleet:north.1" group remove fleet:north.1 ue:meter-1
refused 1 "404" group remove fleet:north.1 ue:meter-1
ok "as:as2: may send to group fleet:north.1" group grant fleet:north.1 as:as2
ok "as:as3: may send to and manage group fleet:north.1" group grant fleet:north.1 as:as3 --manage
refused 1 "groups.max_grants" group grant fleet:north.1 ue:meter-9
ok "as:as2: grant on group fleet:north.1 revoked" group revoke fleet:north.1 as:as2
refused 1 "404" group revoke fleet:north.1 as:as2
api GET /admin/v1/groups/fleet:north.1
want 200
node -e '
const o = JSON.parse(require("fs").readFileSync("api.json", "utf8"));
const ok = o.id === "fleet:north.1" && o.kind === "group" && o.creator === "operator" &&
  o.members === 2 && o.grants.length === 1 && o.grants[0].principal === "as:as3" &&
  JSON.stringify(o.grants[0].rights) === "[\"send\",\"manage\"]";
if (!ok) { console.error(JSON.stringify(o)); process.exit(1); }' || m5s_fail "GET group: $(cat api.json)"
api GET /admin/v1/groups/fleet:north.1/members
want 200
[[ $(cat api.json) == '["as:as1","ue:meter/2%x"]' ]] || m5s_fail "members: $(cat api.json)"
refused 1 "no such group" group list nope
refused 1 "no such group" group add nope ue:x
ok "group g.del: created" group create g.del
ok "group g.del: deleted" group delete g.del
refused 1 "no such group" group delete g.del
echo "ok: m5ctl group create/add/remove/list/grant/revoke/delete"

# ---- areas through m5ctl ----------------------------------------------------------------------
ok "area cell-7: created" area create cell-7
ok "ue:meter-1: added to area cell-7" area add cell-7 ue:meter-1
refused 2 "an area's members are UEs" area add cell-7 as:as1
api PUT /admin/v1/areas/cell-7/members/as:as1
problem 400 member
ok "as:as1: may send to area cell-7" area grant cell-7 as:as1
ok "ue:meter-5: may send to area cell-7" area grant cell-7 ue:meter-5
refused 2 "--manage" area grant cell-7 as:as1 --manage
api PUT /admin/v1/areas/cell-7/grants/as:as1 -H 'content-type: application/json' -d '{"rights":["manage"]}'
problem 400 rights
ok "ue:meter-1" area list cell-7
ok "ue:meter-5: grant on area cell-7 revoked" area revoke cell-7 ue:meter-5
ok "ue:meter-1: removed from area cell-7" area remove cell-7 ue:meter-1
ok "" area list cell-7
ok "area cell-7: deleted" area delete cell-7
ok "area cell-8: created" area create cell-8
ok "area fleet:north.1: created" area create fleet:north.1 # its own name space
echo "ok: m5ctl area create/add/remove/list/grant/revoke/delete"

# ---- m5ctl usage errors: exit 2, one line, nothing sent -----------------------------------------
refused 2 "expected a command" group
refused 2 "unknown command" group frobnicate g1
refused 2 "name is missing" group create
refused 2 "a name is 1-128" group create 'bad name'
refused 2 "a name is 1-128" group create "$(printf 'x%.0s' {1..129})"
refused 2 "expected ue:ID or as:ID after the name" group add g1
refused 2 "expected ue:<UE Service ID> or as:<asSvcId>" group add g1 meter-1
refused 2 "expected ue:<UE Service ID> or as:<asSvcId>" group grant g1 as:bad/id
refused 2 "unexpected argument" group delete g1 extra
refused 2 "--manage" group grant g1 ue:x --manage
refused 2 "unknown option" group create g1 --frob
api GET /admin/v1/groups/g1
want 404
echo "ok: m5ctl usage errors"

# ---- the API's own refusals ---------------------------------------------------------------------
api PUT '/admin/v1/groups/bad%20name'
problem 400 groupId
api PUT "/admin/v1/areas/$(printf 'x%.0s' {1..129})"
problem 400 areaId
api PUT /admin/v1/groups/fleet:north.1/members/xx:1
problem 400 member
api PUT /admin/v1/groups/fleet:north.1/grants/ue:
problem 400 principal
api PUT /admin/v1/groups/fleet:north.1/grants/as:as9 -H 'content-type: application/json' -d '{"rights":"send"}'
problem 400 rights
api PUT /admin/v1/groups/fleet:north.1/grants/ue:u9 -H 'content-type: application/json' -d '{"rights":["manage"]}'
problem 400 rights
api PUT /admin/v1/groups/fleet:north.1/grants/as:as9 -H 'content-type: application/json' -d '[1'
problem 400 body
api GET /admin/v1/groups/nope
problem 404
api GET /admin/v1/groups/fleet:north.1/other
problem 404
api POST /admin/v1/groups/fleet:north.1
problem 405
api PUT /admin/v1/groups/fleet:north.1/members
problem 405
api GET /admin/v1/groups/fleet:north.1/members/ue:x
problem 405
echo "ok: admin API refusals (400 invalidParams, 404, 405)"

# ---- a batch of members: POST .../members --------------------------------------------------------
JSONH=(-H 'content-type: application/json')
ok "group batch: created" group create batch
api POST /admin/v1/groups/batch/members "${JSONH[@]}" -d '["ue:b1","ue:b2","ue:b1"]'
want 200
[[ $(json_get api.json added) == 2 && $(json_get api.json members) == 2 ]] || m5s_fail "batch: $(cat api.json)"
api POST /admin/v1/groups/batch/members "${JSONH[@]}" -d '["ue:b2","as:b3"]'
want 200
[[ $(json_get api.json added) == 1 && $(json_get api.json members) == 3 ]] || m5s_fail "batch 2: $(cat api.json)"
api POST /admin/v1/groups/batch/members "${JSONH[@]}" -d '["ue:b4"]'
problem 409
api POST /admin/v1/groups/batch/members "${JSONH[@]}" -d '["ue:ok", "xx:1"]'
problem 400 '[1]'
api POST /admin/v1/groups/batch/members "${JSONH[@]}" -d '[]'
problem 400 body
api POST /admin/v1/areas/cell-8/members "${JSONH[@]}" -d '["as:as1"]'
problem 400 '[0]'
api POST /admin/v1/groups/nope/members "${JSONH[@]}" -d '["ue:x"]'
problem 404
ok $'as:b3\nue:b1\nue:b2' group list batch
echo "ok: a batch of members in one request (POST .../members)"

# ---- persistence --------------------------------------------------------------------------------
stop_m5s
start_m5s
ok $'as:as1\nue:meter/2%x' group list fleet:north.1
api GET /admin/v1/groups/fleet:north.1
want 200
grep -q '"principal":"as:as3"' api.json || m5s_fail "grant lost in the restart: $(cat api.json)"
ok "" area list cell-8
api GET /admin/v1/areas/cell-7
want 404
echo "ok: groups, members, grants and areas survive a restart"
stop_m5s
