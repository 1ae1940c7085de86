#!/usr/bin/env bash
# A device removed from a gateway's configuration is de-registered at m5s (docs/gateways.md,
# "Registration"), with the real m5s, m5-aanf, m5c, m5ctl and m5gw (test-only loop kind):
# m5gw starts with devices [mqa, mqb]; m5s also holds 260 other IDs for gw1 from before (more
# than one page of the listing). m5gw is restarted with [mqa] and a fresh spool (what m5s holds
# is learnt from m5s, not from the gateway's files): it lists its registrations at m5s page by
# page and de-registers the 261 it no longer serves, logging each. Then m5s holds mqa only
# (m5ctl gateway list, the listing), mqb can be bound to a subscriber (409 before), and a UE's
# message still reaches mqa.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/core_lib.bash"

gw_pki
start_aanf
start_m5s
setup_ue ue1 001010000000801 b1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
STANDIN_URL="https://localhost:$M5S_NORTH"
held() { # the number of IDs m5s says gw1 holds (m5ctl gateway list's last column)
  ctl gateway list >ctl.out 2>&1 || m5s_fail "m5ctl gateway list: $(cat ctl.out)"
  awk '$1 == "gw1" { print $NF }' ctl.out
}
# m5gw's MSGG listener port is picked when its configuration is written: the gateway client
# gets it below, once m5gw runs (m5s needs it only to deliver)
ctl gateway add --gw-id gw1 --kind mqtt --target "localhost:9" --ue-svc-ids 'mq*' \
  >ctl.out 2>&1 || m5s_fail "m5ctl gateway add: $(cat ctl.out)"

# -- what m5s holds for gw1 from before: 260 IDs registered by gw1 (curl with its certificate)
REG=/msgs-gwueregistration/v1/registrations
gwcurl() { # METHOD PATH [curl args] -> ST, out.json
  local method=$1 path=$2
  shift 2
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/gw1.crt" \
    --key "$PKI/gw1.key" -X "$method" -o out.json -w '%{http_code}' "$@" "$STANDIN_URL$path")
}
gwcurl POST /oauth2/token -d grant_type=client_credentials
[[ $ST == 200 ]] || m5s_fail "gw1's token: $ST $(cat out.json)"
TOK=$(json_get out.json access_token)
printf '{"gwId":"gw1","ueSvcIds":[%s]}' "$(seq -f '"mqold%03g"' -s, 1 260)" >req.json
gwcurl POST "$REG" -H "authorization: Bearer $TOK" -H 'content-type: application/json' \
  --data-binary @req.json
[[ $ST == 201 ]] || m5s_fail "registering the 260 old IDs: $ST $(head -c 300 out.json)"

# -- m5gw with [mqa, mqb]
start_gw "loop: {log: $GW_LOOP_LOG, register: [mqa, mqb]}" "spool: {path: $M5_TMP/gw/spool1.db}"
ctl gateway add --gw-id gw1 --kind mqtt --target "localhost:$GW_MSGG" --ue-svc-ids 'mq*' \
  >ctl.out 2>&1 || m5s_fail "m5ctl gateway add (target): $(cat ctl.out)"
wait_file_line "$GW_LOOP_LOG" '"event":"registered","status":0' 30 "$GW_PID" ||
  m5s_fail "mqa, mqb not registered: $(cat "$GW_LOOP_LOG"; tail -5 "$GW_LOG")"
# its first convergence removes the 260 it does not serve; wait for it, then m5s holds 2
wait_file_line "$GW_LOG" 'registrations: m5s held 262 UE Service ID\(s\) for gw1; 260 not configured any more: 260 de-registered' 60 "$GW_PID" ||
  m5s_fail "m5gw did not converge m5s at start: $(grep registrations "$GW_LOG" | tail -5)"
[[ $(held) == 2 ]] || m5s_fail "m5s holds $(held) for gw1 after the first start, want 2 (mqa, mqb)"
ST=$(admin_curl -s -o out.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"supi":"001010000000802"}' "$M5S_ADMIN/admin/v1/bindings/mqb")
[[ $ST == 409 ]] || fail "binding mqb while gw1 holds it: $ST $(cat out.json)"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "ok: m5gw with [mqa, mqb] registered both and removed the 260 IDs it does not serve"

# -- the same ones again, from before: restarted with [mqa] and a new spool
gwcurl POST "$REG" -H "authorization: Bearer $TOK" -H 'content-type: application/json' \
  --data-binary @req.json
[[ $ST == 201 ]] || m5s_fail "registering the 260 old IDs again: $ST $(head -c 300 out.json)"
[[ $(held) == 262 ]] || m5s_fail "m5s holds $(held) for gw1 before the restart, want 262"
mv "$GW_LOG" "$M5_TMP/m5gw.1.log"
: >"$GW_LOOP_LOG"
start_gw "loop: {log: $GW_LOOP_LOG, register: [mqa]}" "spool: {path: $M5_TMP/gw/spool2.db}"
ctl gateway add --gw-id gw1 --kind mqtt --target "localhost:$GW_MSGG" --ue-svc-ids 'mq*' \
  >ctl.out 2>&1 || m5s_fail "m5ctl gateway add (new target): $(cat ctl.out)"
wait_file_line "$GW_LOG" 'registrations: m5s held 262 UE Service ID\(s\) for gw1; 261 not configured any more: 261 de-registered, 0 gone already, 0 refused' 60 "$GW_PID" ||
  m5s_fail "m5gw did not converge m5s after the restart: $(grep registrations "$GW_LOG" | tail -5)"
grep -q 'de-registration of mqb (not configured): done' "$GW_LOG" ||
  fail "m5gw did not log mqb's de-registration"
! grep -q 'de-registration of mqa' "$GW_LOG" || fail "m5gw de-registered mqa, which it serves"
pages=$(grep -c "listing of the registrations after" "$GW_LOG" || true)
echo "m5gw read its 262 registrations in $pages page(s)"
((pages >= 2)) || fail "262 IDs in pages of 200 need 2 requests, the log shows $pages"

# -- m5s holds mqa only; mqb is free for someone else; mqa still gets its messages
[[ $(held) == 1 ]] || m5s_fail "m5s holds $(held) for gw1 after the restart, want 1: $(cat ctl.out)"
gwcurl GET "$REG" -H "authorization: Bearer $TOK"
[[ $ST == 200 && $(tr -d ' \n' <out.json) == '{"gwId":"gw1","ueSvcIds":["mqa"],"more":false}' ]] ||
  fail "gw1's registrations at m5s: $ST $(cat out.json)"
ST=$(admin_curl -s -o out.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
  -d '{"supi":"001010000000802"}' "$M5S_ADMIN/admin/v1/bindings/mqb")
[[ $ST == 201 ]] || fail "binding mqb once gw1 let it go: $ST $(cat out.json)"
timeout 30 "$M5_BIN/m5c" --config ue1.yaml --server "$(m5c_uri tls)" send --to ue:mqa --payload hi \
  --msg-id dr1 >send.out 2>&1 || m5s_fail "m5c send to mqa: $(cat send.out)"
wait_file_line "$GW_LOOP_LOG" '"event":"deliver","oriType":"UE","ori":"ue1","destType":"UE","dest":"mqa","msgId":"dr1"' 30 ||
  m5s_fail "mqa did not get dr1: $(cat "$GW_LOOP_LOG")"
stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "ok: restarted with [mqa]: mqb and the old IDs de-registered, mqb bindable, mqa served"
echo "PASS"
