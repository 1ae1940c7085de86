#!/usr/bin/env bash
# Integration: the listing of a gateway's own registrations on m5s (our resource, not
# TS 29.538: GET /msgs-gwueregistration/v1/registrations[?limit=][&after=]; docs/northbound.md
# "Gateways"), with which a gateway learns what m5s holds for it and drops what it no longer
# serves. curl plays the gateway with real `m5ctl pki issue --gw-id` certificates and tokens:
#  - pages: ordered by byte, at most `limit` (default 1000) IDs, "more" while others follow,
#    `after` (percent-encoded, also an ID with '/', '&', '%') continues after that ID; walking
#    the pages gives every ID once; a deregistered ID is gone from the list (and a DELETE of
#    an ID with %00 inside is 404, not the ID cut short at the NUL);
#  - only the caller's own: another gateway's IDs, even inside the caller's pattern, never show;
#  - refusals: an AS (certificate and token) 403 NOT_A_GATEWAY, a token without the scope 403,
#    none 401; a bad limit, a bad after, an unknown or a repeated parameter 400 naming it.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
start_m5s
PKI=$M5_TMP/pki
NB="https://localhost:$M5S_NORTH"
REG=/msgs-gwueregistration/v1/registrations
for g in gw1 gw2; do
  timeout 60 "$M5_BIN/m5ctl" pki issue --gw-id "$g" --dir "$PKI" >/dev/null ||
    fail "m5ctl pki issue --gw-id $g"
done
ctl gateway add --gw-id gw1 --kind mqtt --target localhost:9 --ue-svc-ids 'mq*' >ctl.out ||
  m5s_fail "gateway add gw1: $(cat ctl.out)"
ctl gateway add --gw-id gw2 --kind sms --target localhost:9 --ue-svc-ids '*' >ctl.out ||
  m5s_fail "gateway add gw2: $(cat ctl.out)"

source "$M5_SRC/tests/it/gw_north.bash"
TOK1=$(token gw1)
TOK2=$(token gw2)
TOK1_DELIVERY=$(token gw1 msgs-msgdelivery)
gwreg() { # GW TOKEN IDS...: registers them (one request), 201 wanted
  local g=$1 t=$2
  shift 2
  printf '{"gwId":"%s","ueSvcIds":[%s]}' "$g" "$(printf '"%s",' "$@" | sed 's/,$//')" >req.json
  gw "$g" POST "$REG" -H "authorization: Bearer $t" -H 'content-type: application/json' \
    --data-binary @req.json
  [[ $ST == 201 ]] || m5s_fail "registration by $g: $ST $(head -c 300 out.json)"
}
list() { # GW TOKEN [QUERY]: GET the registrations -> ST, out.json
  gw "$1" GET "$REG${3:+?$3}" -H "authorization: Bearer $2"
}
ids_of() { # FILE: the ueSvcIds, one a line
  node -e 'for (const s of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).ueSvcIds)
             console.log(s)' "$1"
}
urlenc() { node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$1"; }

# gw1: 1500 IDs in two requests, plus three with characters a cursor must encode; gw2 holds
# IDs inside gw1's pattern too (its own is '*')
mapfile -t A < <(seq -f 'mq%04g' 1 1000)
mapfile -t B < <(seq -f 'mq%04g' 1001 1500)
ODD=('mq/a&b' 'mq%2F' 'mq~z?x=1')
gwreg gw1 "$TOK1" "${A[@]}"
gwreg gw1 "$TOK1" "${B[@]}" "${ODD[@]}"
gwreg gw2 "$TOK2" mq0500x mqzz sms-1
printf '%s\n' "${A[@]}" "${B[@]}" "${ODD[@]}" | LC_ALL=C sort >want.txt
[[ $(wc -l <want.txt) == 1503 ]] || fail "test set-up: $(wc -l <want.txt) IDs"

# ---- a page: the first 1000 by default, ordered, more follow ----
list gw1 "$TOK1"
[[ $ST == 200 ]] || m5s_fail "GET the registrations: $ST $(head -c 300 out.json)"
[[ $(json_get out.json gwId) == gw1 && $(json_get out.json more) == true ]] ||
  fail "the first page: $(head -c 300 out.json)"
node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
         const k = Object.keys(o).sort().join(",");
         if (k !== "gwId,more,ueSvcIds") { console.error("members " + k); process.exit(1); }' out.json ||
  fail "the page's members: $(head -c 300 out.json)"
ids_of out.json >page.txt
[[ $(wc -l <page.txt) == 1000 ]] || fail "default limit: $(wc -l <page.txt) IDs"
head -n 1000 want.txt | cmp -s - page.txt || fail "the first page is not the first 1000 in byte order: $(diff <(head -n 1000 want.txt) page.txt | head)"
echo "ok: the first page (1000 by default, byte order, more: true)"

# ---- walking with limit=400 and the cursor gives every ID once, only gw1's ----
: >walk.txt
after=""
pages=0
while :; do
  list gw1 "$TOK1" "limit=400${after:+&after=$(urlenc "$after")}"
  [[ $ST == 200 ]] || m5s_fail "page $pages (after '$after'): $ST $(head -c 300 out.json)"
  ids_of out.json >page.txt
  (($(wc -l <page.txt) <= 400)) || fail "a page of limit=400 has $(wc -l <page.txt)"
  cat page.txt >>walk.txt
  pages=$((pages + 1))
  [[ $(json_get out.json more) == true ]] || break
  after=$(tail -n 1 page.txt)
  ((pages < 10)) || fail "the walk does not end: $(tail -3 walk.txt)"
done
((pages == 4)) || fail "1503 IDs in pages of 400: $pages pages, want 4"
cmp -s want.txt walk.txt || fail "the walk differs from gw1's IDs: $(diff want.txt walk.txt | head)"
echo "ok: 4 pages of at most 400 give gw1's 1503 IDs once each, in order (cursors with / & % ? =)"

list gw1 "$TOK1" "limit=7&after=$(urlenc 'mq%2F')"
[[ $ST == 200 ]] || fail "after an encoded ID: $ST $(cat out.json)"
ids_of out.json >page.txt
grep -A7 -xF 'mq%2F' want.txt | tail -n 7 | cmp -s - page.txt || fail "after 'mq%2F': $(cat page.txt)"
list gw1 "$TOK1" "after=mq~zz"
[[ $ST == 200 && $(json_get out.json more) == false && -z $(ids_of out.json) ]] ||
  fail "after the last ID: $ST $(cat out.json)"

# ---- only its own: gw2 sees its three, gw1 never sees gw2's ----
list gw2 "$TOK2"
[[ $ST == 200 ]] || fail "gw2's list: $ST $(cat out.json)"
[[ $(ids_of out.json | tr '\n' ' ') == 'mq0500x mqzz sms-1 ' && $(json_get out.json more) == false ]] ||
  fail "gw2's list: $(cat out.json)"
! grep -qx -e mq0500x -e mqzz walk.txt || fail "gw1's list shows gw2's IDs"
echo "ok: each gateway lists only its own IDs"

# ---- a deregistered ID leaves the list ----
gw gw1 DELETE "$REG/mq0002" -H "authorization: Bearer $TOK1"
[[ $ST == 204 ]] || fail "DELETE mq0002: $ST $(cat out.json)"
list gw1 "$TOK1" "limit=2"
[[ $(ids_of out.json | tr '\n' ' ') == 'mq%2F mq/a&b ' ]] || fail "after DELETE: $(cat out.json)"
gw gw1 DELETE "$REG/mq0003%00x" -H "authorization: Bearer $TOK1"
[[ $ST == 404 ]] || fail "DELETE mq0003%00x (a NUL inside): $ST, want 404 and mq0003 kept"
list gw1 "$TOK1" "limit=2&after=mq0001"
[[ $(ids_of out.json | tr '\n' ' ') == 'mq0001 mq0003 ' ]] && fail "the cursor is not exclusive"
[[ $(ids_of out.json | tr '\n' ' ') == 'mq0003 mq0004 ' ]] || fail "after DELETE mq0002: $(cat out.json)"
echo "ok: a deregistered ID is no longer listed"

# ---- refusals ----
as1_client
nb "$REG" -H "authorization: Bearer $TOKEN"
[[ $ST == 403 ]] || fail "an AS listing: $ST $(cat out.json)"
expect_problem out.json 403 NOT_A_GATEWAY
list gw1 "$TOK1_DELIVERY"
[[ $ST == 403 ]] || fail "a token without msgs-gwueregistration: $ST $(cat out.json)"
expect_problem out.json 403 INSUFFICIENT_SCOPE
gw gw1 GET "$REG"
[[ $ST == 401 ]] || fail "no token: $ST $(cat out.json)"
for q in limit=0 limit=1001 limit=abc limit=-1 limit= limit=99999999999999999999 'limit=5&limit=6'; do
  list gw1 "$TOK1" "$q"
  [[ $ST == 400 ]] || fail "?$q: $ST $(cat out.json)"
  expect_problem out.json 400 INVALID_QUERY_PARAM limit
done
for q in after= 'after=%00mq1' 'after=%zz' 'after=a%20b' 'after=mq1&after=mq2'; do
  list gw1 "$TOK1" "$q"
  [[ $ST == 400 ]] || fail "?$q: $ST $(cat out.json)"
  expect_problem out.json 400 INVALID_QUERY_PARAM after
done
list gw1 "$TOK1" "limt=5"
[[ $ST == 400 ]] || fail "an unknown parameter: $ST $(cat out.json)"
expect_problem out.json 400 INVALID_QUERY_PARAM limt
gw gw1 PUT "$REG" -H "authorization: Bearer $TOK1"
[[ $ST == 405 ]] || fail "PUT on the registrations: $ST"
gw gw1 GET "$REG/mq0001" -H "authorization: Bearer $TOK1"
[[ $ST == 405 ]] || fail "GET on one registration: $ST"
echo "ok: refusals (an AS 403, no scope 403, no token 401, bad limit / after / unknown parameter 400)"

stop_m5s
echo "PASS"
