#!/usr/bin/env bash
# Integration: nothing in groups and areas passes with an identifier to its next holder
# (docs/security.md; src/server/groups/groups_purge.c), through the admin API and SEAL GM:
#  - an AS client that created a group through SEAL GM, is a member of and holds grants on the
#    operator's group and area, is deleted (DELETE /admin/v1/as-clients/as1): its created group
#    is gone, its membership and grants are gone; created again under the same asSvcId it
#    lists no group (SEAL GM GET of the collection: []) and cannot manage the old ones (403);
#  - a UE Service ID re-bound to another SUPI (PUT /admin/v1/bindings) leaves every group and
#    area and loses its grants; the same SUPI again changes nothing; un-binding (DELETE) does
#    the same as a re-bind;
#  - groups.max_members_per_as: an AS's groups together take at most that many members
#    (403 LIMIT_REACHED on SEAL GM; 409 on the admin API for the AS's group), another AS and the
#    operator keep their own room;
#  - it all holds after a restart (committed).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
make_cert as2 URI:urn:msgin5g:as:as2
start_aanf
start_m5s "groups: {max_members_per_as: 4}"
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
GM=/ss-gm/v1/group-documents
JSON=(-H 'content-type: application/json')

nb() { # AS METHOD PATH [curl args...] -> $ST, body in out.json
  local as=$1 method=$2 path=$3
  shift 3
  ST=$(curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/$as.crt" --key "$PKI/$as.key" \
    -X "$method" -o out.json -w '%{http_code}' "$@" "$NB$path") || ST="curl-exit-$?"
}
want() { [[ $ST == "$1" ]] || m5s_fail "want $1, got $ST: $(cat out.json 2>/dev/null)"; }
api() { # METHOD PATH [curl args] -> $ST, body in api.json
  local method=$1 path=$2
  shift 2
  ST=$(admin_curl -s -X "$method" -o api.json -w '%{http_code}' "$@" "$M5S_ADMIN$path") || ST="curl-exit-$?"
}
api_ok() { # WANT METHOD PATH [curl args]
  local w=$1
  shift
  api "$@"
  [[ $ST == "$w" ]] || m5s_fail "admin $1 $2: want $w, got $ST: $(cat api.json 2>/dev/null)"
}
members() { # KIND ID -> the members' JSON array
  api_ok 200 GET "/admin/v1/$1/$2/members"
  cat api.json
}
grants() { # KIND ID -> the principals of its grants, comma-separated
  api_ok 200 GET "/admin/v1/$1/$2"
  node -e 'const o = JSON.parse(require("fs").readFileSync("api.json", "utf8"));
    process.stdout.write(o.grants.map(g => g.principal).join(","))'
}
client() { # ID: creates the AS client
  api_ok 201 PUT "/admin/v1/as-clients/$1" "${JSON[@]}" -d '{"targets":["127.0.0.1:9"]}'
}
token() { # AS -> $TOKEN
  nb "$1" POST /oauth2/token -H 'content-type: application/x-www-form-urlencoded' \
    -d grant_type=client_credentials
  want 200
  TOKEN=$(json_get out.json access_token)
}
bind() { # ID SUPI WANT
  api_ok "$3" PUT "/admin/v1/bindings/$1" "${JSON[@]}" -d "{\"supi\":\"$2\"}"
}

# ---- an AS client deleted and created again -----------------------------------------------------
client as1
client as2
token as1
A1=(-H "authorization: Bearer $TOKEN")
nb as1 POST $GM "${JSON[@]}" "${A1[@]}" -d '{"valGroupId":"as1.made","members":[{"valUeId":"ue-1"}]}'
want 201
api_ok 201 PUT /admin/v1/groups/ops.g
api_ok 201 PUT /admin/v1/groups/ops.g/members/as:as1
api_ok 201 PUT /admin/v1/groups/ops.g/members/ue:ue-7
api_ok 201 PUT /admin/v1/groups/ops.g/grants/as:as1 "${JSON[@]}" -d '{"rights":["send","manage"]}'
api_ok 201 PUT /admin/v1/groups/ops.g/grants/as:as2
api_ok 201 PUT /admin/v1/areas/cell-1
api_ok 201 PUT /admin/v1/areas/cell-1/grants/as:as1
nb as1 GET $GM "${A1[@]}"
want 200
[[ $(grep -o '"valGroupId"' out.json | wc -l) == 2 ]] || m5s_fail "as1 before: $(cat out.json)"

api_ok 204 DELETE /admin/v1/as-clients/as1
api_ok 404 GET /admin/v1/groups/as1.made
[[ $(members groups ops.g) == '["ue:ue-7"]' ]] || m5s_fail "as1 still a member: $(cat api.json)"
[[ $(grants groups ops.g) == as:as2 ]] || m5s_fail "as1's grant on ops.g kept: $(cat api.json)"
[[ $(grants areas cell-1) == "" ]] || m5s_fail "as1's grant on cell-1 kept: $(cat api.json)"
grep -q 'as:as1 handed over: 1 created groups deleted, 1 memberships and 2 grants dropped' \
  "$M5S_LOG" || m5s_fail "no hand-over line in the log"
client as1
token as1
A1=(-H "authorization: Bearer $TOKEN")
nb as1 GET $GM "${A1[@]}"
want 200
[[ $(cat out.json) == '[]' ]] || m5s_fail "the new as1 inherits groups: $(cat out.json)"
for g in ops.g as1.made; do
  nb as1 GET "$GM/$g" "${A1[@]}"
  want 403
done
echo "ok: a deleted AS client's groups, memberships and grants go; created again it has none"

# ---- a UE Service ID re-bound or un-bound ---------------------------------------------------
bind ue-7 001010000000001 201
api_ok 201 PUT /admin/v1/areas/cell-1/members/ue:ue-7
api_ok 201 PUT /admin/v1/areas/cell-1/grants/ue:ue-7
api_ok 201 PUT /admin/v1/groups/ops.g/members/ue:ue-8
bind ue-7 001010000000001 200 # the same SUPI: nothing changes
[[ $(members groups ops.g) == '["ue:ue-7","ue:ue-8"]' ]] || m5s_fail "same SUPI: $(cat api.json)"
bind ue-7 001010000000002 200 # another SUPI: the new subscriber starts in no group
[[ $(members groups ops.g) == '["ue:ue-8"]' ]] || m5s_fail "re-bound ue-7 kept: $(cat api.json)"
[[ $(members areas cell-1) == '[]' ]] || m5s_fail "re-bound ue-7 kept in the area: $(cat api.json)"
[[ $(grants areas cell-1) == "" ]] || m5s_fail "re-bound ue-7 kept its grant: $(cat api.json)"
api_ok 201 PUT /admin/v1/groups/ops.g/members/ue:ue-7
api_ok 200 DELETE /admin/v1/bindings/ue-7
[[ $(members groups ops.g) == '["ue:ue-8"]' ]] || m5s_fail "un-bound ue-7 kept: $(cat api.json)"
echo "ok: a re-bound or un-bound UE Service ID leaves every group and area (the same SUPI: kept)"

# ---- groups.max_members_per_as (4 here) ---------------------------------------------------------
nb as1 POST $GM "${JSON[@]}" "${A1[@]}" -d '{"valGroupId":"b.1","members":[{"valUeId":"u1"},{"valUeId":"u2"},{"valUeId":"u3"}]}'
want 201
nb as1 POST $GM "${JSON[@]}" "${A1[@]}" -d '{"valGroupId":"b.2","members":[{"valUeId":"u4"},{"valUeId":"u5"}]}'
want 403
[[ $(json_get out.json cause) == LIMIT_REACHED ]] && grep -q max_members_per_as out.json ||
  m5s_fail "over the AS's member budget: $(cat out.json)"
nb as1 PATCH $GM/b.1 -H 'content-type: application/merge-patch+json' "${A1[@]}" \
  -d '{"members":[{"valUeId":"u1"},{"valUeId":"u2"},{"valUeId":"u3"},{"valUeId":"u4"},{"valUeId":"u5"}]}'
want 403
api_ok 201 PUT /admin/v1/groups/b.1/members/ue:u4
api_ok 409 PUT /admin/v1/groups/b.1/members/as:as9 # the AS's budget, whoever adds
grep -q max_members_per_as api.json || m5s_fail "409 without the bound: $(cat api.json)"
token as2
nb as2 POST $GM "${JSON[@]}" -H "authorization: Bearer $TOKEN" \
  -d '{"valGroupId":"c.1","members":[{"valUeId":"u1"},{"valUeId":"u2"},{"valUeId":"u3"},{"valUeId":"u4"}]}'
want 201
api_ok 200 POST /admin/v1/groups/ops.g/members "${JSON[@]}" -d '["ue:o1","ue:o2","ue:o3","ue:o4","ue:o5"]'
echo "ok: groups.max_members_per_as refuses growth of one AS's groups (403 / 409), not another's"

# ---- committed --------------------------------------------------------------------------------
stop_m5s
start_m5s "groups: {max_members_per_as: 4}"
api_ok 404 GET /admin/v1/groups/as1.made
[[ $(grants groups ops.g) == as:as2 ]] || m5s_fail "after the restart: $(cat api.json)"
[[ $(members areas cell-1) == '[]' ]] || m5s_fail "after the restart: $(cat api.json)"
echo "ok: the hand-overs survive a restart"
stop_m5s
