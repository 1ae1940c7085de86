# shellcheck shell=bash
# curl as a message gateway on m5s's northbound API (tests/it/test_m5s_gw*.sh), sourced after
# tests/lib.sh, with PKI (gw-<gwId>.crt/.key from m5ctl pki issue --gw-id) and NB (the base URL)
# set by the test.
gw() { # GW METHOD PATH [curl args]: a northbound request with GW's certificate -> ST, out.json
  local g=$1 method=$2 path=$3
  shift 3
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/gw-$g.crt" \
    --key "$PKI/gw-$g.key" -X "$method" -o out.json -w '%{http_code}' "$@" "$NB$path")
}
token() { # GW [scope]
  gw "$1" POST /oauth2/token -d grant_type=client_credentials ${2:+-d "scope=$2"}
  [[ $ST == 200 ]] || m5s_fail "token for $1: $ST $(cat out.json)"
  json_get out.json access_token
}
