#!/usr/bin/env bash
# Integration: the Application Server clients of the northbound API on m5s's management port
# (/admin/v1/as-clients/{asSvcId}, docs/admin-api.md): create, read, replace, remove; every bad
# input with its precise problem and nothing changed; persistence across a restart.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_pki
start_aanf
start_m5s

# req METHOD PATH [BODY [CONTENT-TYPE]] -> $ST (status) and body in out.json
req() {
  local args=(-s --max-time 5 -o out.json -w '%{http_code}' -X "$1")
  [[ $# -ge 3 ]] && args+=(-H "content-type: ${4:-application/json}" --data-binary "$3")
  ST=$(admin_curl "${args[@]}" "$M5S_ADMIN$2")
}
want() { # STATUS [PARAM]: the last answer
  [[ $ST == "$1" ]] || m5s_fail "want HTTP $1, got $ST: $(cat out.json)"
  if [[ -n ${2:-} ]]; then
    local got
    got=$(node -e 'const o = JSON.parse(require("fs").readFileSync("out.json", "utf8"));
                   process.stdout.write(String(o.invalidParams && o.invalidParams[0].param))')
    [[ $got == "$2" ]] || m5s_fail "want invalidParams $2: $(cat out.json)"
  fi
}
P=/admin/v1/as-clients

req GET $P/meter-as && want 404
req PUT $P/meter-as '{"targets":["AS.example:8443","127.0.0.1:9443","[::1]:9443"]}' && want 201
[[ $(json_get out.json asSvcId) == meter-as && $(json_get out.json registered) == false ]] ||
  m5s_fail "PUT answer: $(cat out.json)"
grep -q '"targets":\["as.example:8443","127.0.0.1:9443","\[::1\]:9443"\]' out.json ||
  m5s_fail "targets not normalised (lowercase) in order: $(cat out.json)"
req GET $P/meter-as && want 200
req PUT $P/meter-as '{"targets":["as.example:8443"]}' && want 200
grep -q '"targets":\["as.example:8443"\]' out.json || m5s_fail "replace: $(cat out.json)"
echo "ok: create, read, replace"

# bad input: precise problem, nothing changed
for bad in '{"targets":[]}' '{"targets":"as.example:1"}' '{}' '[1]' 'not json' \
  '{"targets":["as.example"]}' '{"targets":["as.example:0"]}' '{"targets":["https://as.example:1"]}' \
  '{"targets":["as.example:1/x"]}' '{"targets":["a b:1"]}' '{"targets":[7]}' \
  '{"targets":["as.example:1"],"targets":["x:1"]}'; do
  req PUT $P/meter-as "$bad" && want 400
done
req PUT $P/meter-as '{"targets":["ok.example:1","bad"]}' && want 400 'targets[1]'
req PUT $P/meter-as '{"targets":["x:1","x:2","x:3","x:4","x:5","x:6","x:7","x:8","x:9","x:10","x:11","x:12","x:13","x:14","x:15","x:16","x:17"]}' &&
  want 400 targets
req PUT $P/meter-as '{"targets":["as.example:1"]}' text/plain && want 415
req PUT "$P/a%20b" '{"targets":["as.example:1"]}' && want 400 asSvcId
req PUT "$P/urn:msgin5g:as:x" '{"targets":["as.example:1"]}' && want 400 asSvcId
req POST $P/meter-as '{}' && want 405
req GET $P/meter-as && want 200
grep -q '"targets":\["as.example:8443"\]' out.json || m5s_fail "a refused PUT changed the client: $(cat out.json)"
echo "ok: bad input refused with the parameter named, nothing changed"

# persisted
stop_m5s
start_m5s
req GET $P/meter-as && want 200
grep -q '"targets":\["as.example:8443"\]' out.json || m5s_fail "after restart: $(cat out.json)"
req DELETE $P/meter-as && want 204
req DELETE $P/meter-as && want 404
req GET $P/meter-as && want 404
stop_m5s
echo "ok: persisted across a restart; removed"
