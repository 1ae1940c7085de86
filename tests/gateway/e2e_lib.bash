# shellcheck shell=bash
# Helpers of the end-to-end gateway tests (tests/gateway/e2e_*.sh), sourced after tests/lib.sh
# and tests/gateway/core_lib.bash: every part real — m5-aanf, m5s (restartable on its own
# ports and database), UEs played by m5c, an Application Server played by curl on the
# northbound API (its token, its registration, deliver-as-message) with
# tests/interop/as_server.mjs as its notification receiver, and m5gw of any kind (the kind's
# own YAML lines from the caller). Kind-specific helpers live beside the kind's own test
# helpers (mqtt_lib.bash for kind mqtt).

E2E_GW_CONFIG=$M5_TMP/m5gw.yaml
GW_LOG=$M5_TMP/m5gw.log

# e2e_start_m5s: the PKI (gw_pki: also the gateway's listener certificate), m5-aanf and m5s.
e2e_start_m5s() {
  gw_pki
  start_aanf
  start_m5s
  # shellcheck disable=SC2034 # read by write_gw_config (core_lib.bash): the gateway's m5s.url
  STANDIN_URL="https://localhost:$M5S_NORTH"
}

# e2e_m5s_stop: m5s stopped (SIGTERM, exit 0); its database, config and ports stay.
e2e_m5s_stop() { stop_m5s; }

# e2e_write_gw FILE [YAML lines...]: write_gw_config without the test-only loop kind's keys.
e2e_write_gw() {
  write_gw_config "$@"
  sed -i '/^loop:/d' "$1"
}

# e2e_gw_start KIND [YAML lines...]: m5gw gw1 of that kind (write_gw_config's core keys, the
# kind's lines from the caller) on fresh ports, healthy (GW_PID, GW_MSGG, GW_MGMT); then m5s
# learns it as gateway client gw1 (kind KIND, target its listener, pattern $E2E_GW_PATTERN,
# default 'mq*').
e2e_gw_start() {
  local kind=$1
  shift
  launch_daemon "$M5_BIN/m5gw" e2e_write_gw "$E2E_GW_CONFIG" "$GW_LOG" GW_MGMT "kind: $kind" "$@" ||
    fail "m5gw ($kind) did not become healthy: $(tail -20 "$GW_LOG")"
  GW_PID=$LAUNCH_PID
  ctl gateway add --gw-id gw1 --kind "$kind" --target "localhost:$GW_MSGG" \
    --ue-svc-ids "${E2E_GW_PATTERN:-mq*}" >"$M5_TMP/ctl.out" 2>&1 ||
    m5s_fail "m5ctl gateway add: $(cat "$M5_TMP/ctl.out")"
}

# e2e_gw_start_again: m5gw on the same config (ports, spool) again, healthy (GW_PID).
e2e_gw_start_again() {
  "$M5_BIN/m5gw" --config "$E2E_GW_CONFIG" >>"$GW_LOG" 2>&1 &
  GW_PID=$!
  track_pid "$GW_PID"
  wait_health "$GW_MGMT" "$GW_PID" 20 || fail "m5gw did not start again: $(tail -20 "$GW_LOG")"
}

# e2e_gw_kill9: m5gw killed with SIGKILL (no commit, no goodbye) and reaped.
e2e_gw_kill9() {
  kill -KILL "$GW_PID"
  wait "$GW_PID" 2>/dev/null || true
}

# e2e_gw_stop: SIGTERM, exit 0 within 5 s (ASan: no leak).
e2e_gw_stop() { stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly: $(tail -20 "$GW_LOG")"; }

# gw_health_get PATH: a member of the gateway's /healthz (dotted path, e.g. uplink.retried).
gw_health_get() {
  gw_health || return 1
  node -e 'let o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
           for (const k of process.argv[2].split(".")) o = o[k];
           process.stdout.write(String(o))' "$M5_TMP/health.json" "$1"
}

# gw_log_count REGEX: lines of the gateway's log (all its runs) matching REGEX.
gw_log_count() { grep -Ec -- "$1" "$GW_LOG" || true; }

# ---- UEs (m5c) ------------------------------------------------------------------------------

# ue_send UE TO ID TEXT [m5c send options...]: m5c send over TLS, MSGRESP in send-ID.out; its
# exit status is returned.
ue_send() {
  local ue=$1 to=$2 id=$3 text=$4
  shift 4
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri tls)" send \
    --to "$to" --msg-id "$id" --payload "$text" "$@" >"$M5_TMP/send-$id.out" 2>&1
}

# ue_listen UE COUNT SECONDS OUT: m5c listen --count COUNT over TLS (foreground); status returned.
ue_listen() {
  timeout $(($3 + 15)) "$M5_BIN/m5c" --config "$M5_TMP/$1.yaml" --server "$(m5c_uri tls)" \
    listen --count "$2" --timeout "$3" >"$4" 2>&1
}

# ue_lines FILE JS_FILTER [JS_EXPR]: the JSON lines of m5c listen output in FILE for which the
# filter (an expression of `r`) holds, printed as JS_EXPR (default the line).
ue_lines() {
  node -e 'const f = new Function("r", "return (" + process.argv[2] + ")");
           const g = new Function("r", "return (" + (process.argv[3] || "JSON.stringify(r)") + ")");
           for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
             let r; try { r = JSON.parse(l); } catch { continue; }
             if (f(r)) console.log(g(r));
           }' "$1" "$2" "${3:-}"
}

# ---- the Application Server as1 ----------------------------------------------------------------

AS_LOG=$M5_TMP/as.log
AS_MODE=$M5_TMP/as.mode

# e2e_as_start: as1's receiver (tests/interop/as_server.mjs: HTTP/2, m5s's certificate
# required, every body checked against TS 29.538 in strict mode) on a fresh port, as1 an AS
# client of m5s, its token (AS_TOKEN) and its registration with that receiver as targetUri.
e2e_as_start() {
  local i
  : >"$AS_LOG"
  echo 204 >"$AS_MODE"
  for i in 1 2 3; do
    pick_ports AS_PORT
    node "$M5_SRC/tests/interop/as_server.mjs" "$AS_PORT" "$PKI/aanf.key" "$PKI/aanf.crt" \
      "$PKI/ca.crt" "$AS_LOG" "$AS_MODE" "$M5_OPENAPI" >"$M5_TMP/as_server.out" 2>&1 &
    AS_SERVER_PID=$!
    track_pid "$AS_SERVER_PID"
    wait_file_line "$M5_TMP/as_server.out" 'listening' 30 "$AS_SERVER_PID" && break
    ((i < 3)) || fail "the AS receiver did not start: $(cat "$M5_TMP/as_server.out")"
  done
  ST=$(admin_curl -s -o "$M5_TMP/as1.json" -w '%{http_code}' -X PUT -H 'content-type: application/json' \
    -d "{\"targets\":[\"localhost:$AS_PORT\"]}" "$M5S_ADMIN/admin/v1/as-clients/as1")
  [[ $ST == 20? ]] || m5s_fail "PUT as-client as1: $ST $(cat "$M5_TMP/as1.json")"
  as_nb /oauth2/token -d grant_type=client_credentials
  [[ $ST == 200 ]] || m5s_fail "as1's token: $ST $(cat "$M5_TMP/as.out")"
  AS_TOKEN=$(json_get "$M5_TMP/as.out" access_token)
  as_nb /msgs-asregistration/v1/registrations -H "authorization: Bearer $AS_TOKEN" \
    -H 'content-type: application/json' \
    -d "{\"asSvcId\":\"as1\",\"targetUri\":\"https://localhost:$AS_PORT/msgin5g/\"}"
  [[ $ST == 201 ]] || m5s_fail "as1's registration: $ST $(cat "$M5_TMP/as.out")"
}

# as_nb PATH [curl args...]: a northbound request with as1's certificate; status in ST, body in
# $M5_TMP/as.out.
as_nb() {
  local path=$1
  shift
  ST=$(curl -s --http2 --max-time 15 --cacert "$PKI/ca.crt" --cert "$PKI/as1.crt" \
    --key "$PKI/as1.key" -o "$M5_TMP/as.out" -w '%{http_code}' "$@" "https://localhost:$M5S_NORTH$path")
}

# as_deliver BODY_FILE [novalidate]: as1's deliver-as-message (the body must validate as
# UEMessageDelivery; "novalidate" for the repeats of a body shape already checked: node's start
# per message is slow on a loaded machine); status in ST, the MessageDeliveryAck in
# $M5_TMP/as.out.
as_deliver() {
  [[ ${2:-} == novalidate ]] || validate TS29538_MSGS_MSGDelivery.yaml UEMessageDelivery "$1"
  as_nb /msgs-msgdelivery/v1/deliver-as-message -H "authorization: Bearer $AS_TOKEN" \
    -H 'content-type: application/json' --data-binary "@$1"
}

# as_bodies OP JS_FILTER [JS_EXPR]: the bodies m5s POSTed to as1's {targetUri}/OP
# (deliver-message, deliver-report) for which the filter (an expression of the parsed body
# `b`) holds, printed as JS_EXPR (default the body). Fails if one was not a strictly valid
# TS 29.538 body (the receiver's check).
as_bodies() {
  node -e 'const fs = require("fs");
           const f = new Function("b", "return (" + process.argv[3] + ")");
           const g = new Function("b", "return (" + (process.argv[4] || "JSON.stringify(b)") + ")");
           for (const l of fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
             const r = JSON.parse(l);
             if (r.path !== "/msgin5g/" + process.argv[2]) continue;
             if (r.schema !== "ok") throw new Error("not a valid body: " + l);
             const b = JSON.parse(r.body);
             if (f(b)) console.log(g(b));
           }' "$AS_LOG" "$1" "$2" "${3:-}"
}

# wait_as_body OP JS_FILTER SECONDS: until as1 got such a body; 1 on timeout.
wait_as_body() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [[ -n $(as_bodies "$1" "$2" 2>/dev/null) ]] && return 0
    sleep 0.1
  done
  return 1
}
