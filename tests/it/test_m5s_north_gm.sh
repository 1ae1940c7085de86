#!/usr/bin/env bash
# Integration: the SEAL group management API (TS 29.549 SS_GroupManagement,
# /ss-gm/v1/group-documents) on m5s's northbound listener (src/server/north/north_gm.c,
# docs/northbound.md "Groups: SEAL group management"), with curl over HTTP/2 and mTLS:
#  - a token requested without scope carries ss-gm and works; one without ss-gm gets 403
#    insufficient_scope;
#  - as1 creates a group (201 + Location + VALGroupDocument), reads it whole, its members only
#    and its configuration only, lists its groups (with the query filters; the listed
#    documents come without their members), patches it (RFC 7396
#    merge patch: members replaced, an operator-added AS member kept), replaces it (PUT) and
#    deletes it (204); every body m5s sends is valid against TS 29.549 with only declared
#    members, every body the test sends is checked against the schema too;
#  - as2 cannot read, change or delete as1's group: 403 NOT_AUTHORIZED, the same answer as for
#    a group that does not exist; creating a name in use is 403 GROUP_EXISTS; with the
#    operator's manage grant (m5ctl group grant ... --manage) as2 can;
#  - bodies that break the schema get 400 with invalidParams naming the member (and the test
#    proves with the validator that they do break it); valUserId, bad names, a PATCH that is
#    not application/merge-patch+json (415), wrong methods (405).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
make_cert as2 URI:urn:msgin5g:as:as2
start_aanf
start_m5s
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
GM=/ss-gm/v1/group-documents
YAML=TS29549_SS_GroupManagement.yaml

nb() { # AS METHOD PATH [curl args...] -> $ST, body in out.json, headers in hdr.txt
  local as=$1 method=$2 path=$3
  shift 3
  ST=$(curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/$as.crt" --key "$PKI/$as.key" \
    -X "$method" -D hdr.txt -o out.json -w '%{http_code}' "$@" "$NB$path") || ST="curl-exit-$?"
}
want() {
  [[ $ST == "$1" ]] || m5s_fail "want $1, got $ST: $(cat out.json 2>/dev/null)"
  if grep -qi '^content-type: application/problem+json' hdr.txt 2>/dev/null; then
    validate_sent TS29571_CommonData.yaml ProblemDetails out.json
  fi
}
field() { json_get out.json "$1"; }
token() { # AS [SCOPE] -> $TOKEN
  local form="grant_type=client_credentials"
  [[ -n ${2:-} ]] && form+="&scope=$2"
  nb "$1" POST /oauth2/token -H 'content-type: application/x-www-form-urlencoded' -d "$form"
  want 200
  TOKEN=$(field access_token)
}
for as in as1 as2; do
  st=$(admin_curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: application/json' \
    -d '{"targets":["127.0.0.1:9"]}' "$M5S_ADMIN/admin/v1/as-clients/$as")
  [[ $st == 201 ]] || m5s_fail "admin PUT as-clients/$as: $st"
done
JSON=(-H 'content-type: application/json')
MERGE=(-H 'content-type: application/merge-patch+json')
# sent BODY: the body a test sends must be a valid VALGroupDocument (open check)
sent() {
  echo "$1" >req.json
  validate "$YAML" "${2:-VALGroupDocument}" req.json
}
# members_are LIST: the document in out.json has exactly these valUeIds (comma-separated)
members_are() {
  local got
  got=$(node -e 'const o = JSON.parse(require("fs").readFileSync("out.json", "utf8"));
    process.stdout.write((o.members || []).map(m => m.valUeId).join(","))')
  [[ $got == "$1" ]] || m5s_fail "members: want '$1', got '$got': $(cat out.json)"
}

# ---- scope ------------------------------------------------------------------------------------
token as1 # no scope: every scope, ss-gm included
[[ $(field scope) == *ss-gm* ]] || m5s_fail "a token without scope lacks ss-gm: $(field scope)"
A1=(-H "authorization: Bearer $TOKEN")
token as1 msgs-msgdelivery
DOC='{"valGroupId":"fleet.a","grpDesc":"north meters","members":[{"valUeId":"ue-1"},{"valUeId":"ue-2"}],"valServiceIds":["meter"]}'
sent "$DOC"
nb as1 POST $GM "${JSON[@]}" -H "authorization: Bearer $TOKEN" -d "$DOC"
want 403
grep -qi 'error="insufficient_scope"' hdr.txt || m5s_fail "scope missing: $(cat hdr.txt)"
nb as1 POST $GM "${JSON[@]}" -d "$DOC"
want 401
token as1 ss-gm
[[ $(field scope) == ss-gm ]] || m5s_fail "scope ss-gm: $(field scope)"
token as2
A2=(-H "authorization: Bearer $TOKEN")
echo "ok: scope ss-gm (granted by default, required)"

# ---- create, read, list -----------------------------------------------------------------------
nb as1 POST $GM "${JSON[@]}" "${A1[@]}" -d "$DOC"
want 201
validate_sent "$YAML" VALGroupDocument out.json
LOC=$(sed -n 's/^location: *//Ip' hdr.txt | tr -d '\r')
[[ $LOC == "$NB$GM/fleet.a" && $(field resUri) == "$LOC" ]] || m5s_fail "Location '$LOC': $(cat out.json)"
[[ $(field grpDesc) == "north meters" ]] || m5s_fail "grpDesc: $(cat out.json)"
members_are ue-1,ue-2
admin_curl -s "$M5S_ADMIN/admin/v1/groups/fleet.a" >admin.json
grep -q '"creator":"as:as1"' admin.json && grep -q '"principal":"as:as1","rights":\["send","manage"\]' admin.json ||
  m5s_fail "the creator is not granted send and manage: $(cat admin.json)"
nb as1 GET $GM/fleet.a "${A1[@]}"
want 200
validate_sent "$YAML" VALGroupDocument out.json
members_are ue-1,ue-2
nb as1 GET "$GM/fleet%3Aa" "${A1[@]}" # not the same name: fleet:a
want 403
nb as1 GET "$GM/fleet.a%00x" "${A1[@]}" # %00 does not cut the name short to fleet.a
want 403
nb as1 GET "$GM/fleet.a?group-members=true" "${A1[@]}"
want 200
validate_sent "$YAML" VALGroupDocument out.json
members_are ue-1,ue-2
[[ -z $(field grpDesc) && -z $(field resUri) ]] || m5s_fail "group-members=true: $(cat out.json)"
nb as1 GET "$GM/fleet.a?group-configuration=true" "${A1[@]}"
want 200
members_are ""
# the member list is written as text: a UE Service ID with " and \ comes back as it is
admin_curl -s -o /dev/null -X PUT "$M5S_ADMIN/admin/v1/groups/fleet.a/members/ue:ue-%22q%5C"
nb as1 GET "$GM/fleet.a?group-members=true" "${A1[@]}"
want 200
validate_sent "$YAML" VALGroupDocument out.json
members_are 'ue-"q\,ue-1,ue-2'
admin_curl -s -o /dev/null -X DELETE "$M5S_ADMIN/admin/v1/groups/fleet.a/members/ue:ue-%22q%5C"
nb as1 GET "$GM/fleet.a?group-members=yes" "${A1[@]}"
want 400
DOC2='{"valGroupId":"fleet:b.2","members":[{"valUeId":"ue-9"}]}'
sent "$DOC2"
nb as1 POST $GM "${JSON[@]}" "${A1[@]}" -d "$DOC2"
want 201
nb as1 GET $GM "${A1[@]}"
want 200
node -e '
const fs = require("fs");
const a = JSON.parse(fs.readFileSync("out.json", "utf8"));
if (!Array.isArray(a) || a.length !== 2) { console.error(JSON.stringify(a)); process.exit(1); }
a.forEach((d, i) => fs.writeFileSync(`doc${i}.json`, JSON.stringify(d)));
if (a[0].valGroupId !== "fleet.a" || a[1].valGroupId !== "fleet:b.2") process.exit(1);
// the collection lists documents without members (bounded by groups, not members)
if (a.some(d => "members" in d) || a[0].valServiceIds[0] !== "meter") process.exit(1);' ||
  m5s_fail "the collection: $(cat out.json)"
validate_sent "$YAML" VALGroupDocument doc0.json VALGroupDocument doc1.json
nb as1 GET "$GM?val-group-id=fleet%3Ab.2" "${A1[@]}" # percent-encoded
want 200
grep -q '^\[{"valGroupId":"fleet:b.2"' out.json && [[ $(grep -o valGroupId out.json | wc -l) == 1 ]] ||
  m5s_fail "val-group-id filter: $(cat out.json)"
nb as1 GET "$GM?val-service-id=meter" "${A1[@]}"
want 200
grep -q '"valGroupId":"fleet.a"' out.json && ! grep -q 'fleet:b.2' out.json || m5s_fail "val-service-id: $(cat out.json)"
nb as2 GET $GM "${A2[@]}"
want 200
[[ $(cat out.json) == '[]' ]] || m5s_fail "as2 sees as1's groups: $(cat out.json)"
echo "ok: create (201 + Location), read whole / members / configuration, list with filters"

# ---- another AS: the same answer as for no group at all ----------------------------------------
PATCH='{"grpDesc":"mine now"}'
sent "$PATCH" VALGroupDocumentPatch
for req in "GET $GM/fleet.a" "DELETE $GM/fleet.a" "PATCH $GM/fleet.a" "PUT $GM/fleet.a" "GET $GM/nope"; do
  if [[ $req == PUT* ]]; then
    nb as2 PUT "${req#* }" "${JSON[@]}" "${A2[@]}" -d '{"valGroupId":"fleet.a"}'
  else
    nb as2 ${req% *} "${req#* }" "${MERGE[@]}" "${A2[@]}" -d "$PATCH"
  fi
  want 403
  [[ $(field cause) == NOT_AUTHORIZED ]] || m5s_fail "as2 $req: $(cat out.json)"
  cp out.json "as2-$(echo "$req" | tr ' /' '__').json"
done
cmp -s "as2-GET__ss-gm_v1_group-documents_fleet.a.json" "as2-GET__ss-gm_v1_group-documents_nope.json" ||
  m5s_fail "another's group and no group answer differently"
nb as1 GET $GM/fleet.a "${A1[@]}"
want 200
[[ $(field grpDesc) == "north meters" ]] || m5s_fail "as2 changed as1's group: $(cat out.json)"
nb as2 POST $GM "${JSON[@]}" "${A2[@]}" -d '{"valGroupId":"fleet.a"}'
want 403
[[ $(field cause) == GROUP_EXISTS ]] || m5s_fail "POST of a name in use: $(cat out.json)"
timeout 30 "$M5_BIN/m5ctl" group grant fleet.a as:as2 --manage --m5s-admin "$M5S_ADMIN" \
  --admin-token "$M5S_TOKEN_FILE" >/dev/null || m5s_fail "m5ctl group grant --manage"
nb as2 GET $GM/fleet.a "${A2[@]}"
want 200
timeout 30 "$M5_BIN/m5ctl" group revoke fleet.a as:as2 --m5s-admin "$M5S_ADMIN" \
  --admin-token "$M5S_TOKEN_FILE" >/dev/null || m5s_fail "m5ctl group revoke"
nb as2 GET $GM/fleet.a "${A2[@]}"
want 403
echo "ok: as2 cannot touch as1's group (403 NOT_AUTHORIZED, as for none); the operator's grant lets it"

# ---- change -----------------------------------------------------------------------------------
admin_curl -s -o /dev/null -X PUT "$M5S_ADMIN/admin/v1/groups/fleet.a/members/as:as9"
PATCH='{"grpDesc":"moved","members":[{"valUeId":"ue-2"},{"valUeId":"ue-3"}],"valGrpConf":"c1"}'
sent "$PATCH" VALGroupDocumentPatch
nb as1 PATCH $GM/fleet.a "${MERGE[@]}" "${A1[@]}" -d "$PATCH"
want 200
validate_sent "$YAML" VALGroupDocument out.json
members_are ue-2,ue-3
[[ $(field grpDesc) == moved && $(field valGrpConf) == c1 && $(field valServiceIds) == meter ]] ||
  m5s_fail "PATCH: $(cat out.json)"
[[ $(admin_curl -s "$M5S_ADMIN/admin/v1/groups/fleet.a/members") == '["as:as9","ue:ue-2","ue:ue-3"]' ]] ||
  m5s_fail "PATCH lost the operator's AS member or kept ue-1"
nb as1 PATCH $GM/fleet.a "${JSON[@]}" "${A1[@]}" -d "$PATCH"
want 415
REPL='{"valGroupId":"fleet.a","valGrpConf":"c2","members":[{"valUeId":"ue-4"}]}'
sent "$REPL"
nb as1 PUT $GM/fleet.a "${JSON[@]}" "${A1[@]}" -d "$REPL"
want 200
validate_sent "$YAML" VALGroupDocument out.json
members_are ue-4
[[ $(field valGrpConf) == c2 && -z $(field grpDesc) && -z $(field valServiceIds) ]] || m5s_fail "PUT: $(cat out.json)"
echo "ok: PATCH (merge patch; operator-added AS member kept) and PUT"

# ---- bodies that break the schema -------------------------------------------------------------
# breaks DOC SCHEMA PARAM METHOD PATH: the validator refuses DOC, and so does m5s (400 naming PARAM)
breaks() {
  local doc=$1 schema=$2 param=$3 method=$4 path=$5 ct=("${JSON[@]}")
  echo "$doc" >bad.json
  if node "$M5_SRC/tests/schema/validate.mjs" "$M5_OPENAPI/$YAML" "$schema" bad.json >/dev/null 2>&1; then
    fail "$doc is valid $schema: not a schema-breaking body"
  fi
  [[ $method == PATCH ]] && ct=("${MERGE[@]}")
  nb as1 "$method" "$path" "${ct[@]}" "${A1[@]}" -d "$doc"
  want 400
  grep -qF "\"param\":\"$param\"" out.json || m5s_fail "$doc: want invalidParams $param: $(cat out.json)"
}
breaks '{"members":[{"valUeId":"x"}]}' VALGroupDocument valGroupId POST $GM
breaks '{"valGroupId":7}' VALGroupDocument valGroupId POST $GM
breaks '{"valGroupId":"g.x","members":[]}' VALGroupDocument members POST $GM
breaks '{"valGroupId":"g.x","members":"ue-1"}' VALGroupDocument members POST $GM
breaks '{"valGroupId":"g.x","members":[{}]}' VALGroupDocument 'members[0]' POST $GM
breaks '{"valGroupId":"g.x","members":[{"valUeId":"a"},{"valUeId":"b","valUserId":"c"}]}' VALGroupDocument 'members[1]' POST $GM
breaks '{"valGroupId":"g.x","members":[{"valUeId":5}]}' VALGroupDocument 'members[0]' POST $GM
breaks '{"valGroupId":"g.x","grpDesc":5}' VALGroupDocument grpDesc POST $GM
breaks '{"valGroupId":"g.x","valServiceIds":[]}' VALGroupDocument valServiceIds POST $GM
breaks '{"valGroupId":"g.x","locInfo":"here"}' VALGroupDocument locInfo POST $GM
breaks '{"grpDesc":null}' VALGroupDocumentPatch grpDesc PATCH $GM/fleet.a
breaks '{"members":[]}' VALGroupDocumentPatch members PATCH $GM/fleet.a
breaks '{"valGrpConf":["x"]}' VALGroupDocumentPatch valGrpConf PATCH $GM/fleet.a
# valid against the schema, but not what m5s can take
for doc in '{"valGroupId":"bad name"}' '{"valGroupId":"g.x","members":[{"valUserId":"alice"}]}' \
  '{"valGroupId":"g.x","members":[{"valUeId":"has space"}]}'; do
  sent "$doc"
  nb as1 POST $GM "${JSON[@]}" "${A1[@]}" -d "$doc"
  want 400
done
nb as1 PATCH $GM/fleet.a "${MERGE[@]}" "${A1[@]}" -d '{"valGroupId":"other"}'
want 400
for bad in '[1]' 'nope' '{"valGroupId":"g.x","valGroupId":"g.y"}'; do
  nb as1 POST $GM "${JSON[@]}" "${A1[@]}" -d "$bad"
  want 400
done
nb as1 GET "$GM/g.x" "${A1[@]}"
want 403 # none of them made it
nb as1 DELETE $GM "${A1[@]}"
want 405
nb as1 POST $GM/fleet.a "${JSON[@]}" "${A1[@]}" -d '{}'
want 405
echo "ok: schema-breaking bodies get 400 with invalidParams; nothing was created"

# ---- delete -----------------------------------------------------------------------------------
nb as1 DELETE $GM/fleet.a "${A1[@]}"
want 204
nb as1 DELETE $GM/fleet.a "${A1[@]}"
want 403
[[ $(admin_curl -s -o /dev/null -w '%{http_code}' "$M5S_ADMIN/admin/v1/groups/fleet.a") == 404 ]] ||
  m5s_fail "the group is still there"
nb as1 GET $GM "${A1[@]}"
want 200
grep -q 'fleet:b.2' out.json && ! grep -q 'fleet.a' out.json || m5s_fail "after delete: $(cat out.json)"
echo "ok: delete (204), then gone"
stop_m5s
