# shellcheck shell=bash
# Helpers of the gateway core's tests (tests/gateway/core_*.sh), sourced after tests/lib.sh:
# the real m5gw of a test build with its test-only "loop" kind (src/gateway/core/
# gw_loop_adapter.c: its devices echo), the PKI of m5ctl pki init plus the gateway's and its
# MSGG listener's certificates from m5ctl pki issue, curl playing m5s towards the MSGG listener,
# and a node stand-in for m5s's side of MSGin5G-2/-4 (core_m5s_standin.mjs); for the
# core_e2e*.sh tests, an m5gw of an adapter kind made a client of the real m5s.

PKI="$M5_TMP/pki"
GW_LOOP_LOG="$M5_TMP/loop.log"
STANDIN_LOG="$M5_TMP/standin.log"
STANDIN_MODE="$M5_TMP/standin.mode"

# gw_pki: the development PKI, and gw1's certificates as an operator makes them (m5ctl pki
# issue --gw-id gw1): gw-gw1 (clientAuth, SAN URI urn:msgin5g:gw:gw1) towards m5s and msgg-gw1
# (serverAuth, the same SAN URI plus localhost and 127.0.0.1, the names m5s dials) for the
# MSGG listener.
gw_pki() {
  make_pki || fail "m5ctl pki init failed"
  timeout 60 "$M5_BIN/m5ctl" pki issue --gw-id gw1 --dir "$PKI" >/dev/null ||
    fail "m5ctl pki issue --gw-id gw1 failed"
}

# write_gw_config FILE [extra YAML lines...]: a kind loop gateway gw1 on fresh ports, m5s at
# $STANDIN_URL (default https://localhost:1, nothing there), spool $GW_SPOOL; GW_MSGG_EXTRA
# adds msgg.* members (", max_inflight: 2").
write_gw_config() {
  local file=$1
  shift
  pick_ports GW_MSGG GW_MGMT
  local defaults=(
    "gw_id: gw1"
    "kind: loop"
    "m5s: {url: ${STANDIN_URL:-https://localhost:1}}"
    "tls: {cert: $PKI/gw-gw1.crt, key: $PKI/gw-gw1.key, ca: $PKI/ca.crt}"
    "msgg: {host: 127.0.0.1, port: $GW_MSGG, cert: $PKI/msgg-gw1.crt, key: $PKI/msgg-gw1.key${GW_MSGG_EXTRA:-}}"
    "mgmt: {host: 127.0.0.1, port: $GW_MGMT}"
    "spool: {path: ${GW_SPOOL:-$M5_TMP/gw/spool.db}}"
    "uplink: {retry_min_ms: 200, retry_max_ms: 1000, timeout_ms: 3000}"
    "loop: {log: $GW_LOOP_LOG}"
    "log: {level: debug}"
  )
  merge_yaml "$file" "${#defaults[@]}" "${defaults[@]}" "$@"
}

# start_gw [extra YAML lines...]: starts m5gw and waits for its /healthz. Sets GW_PID, GW_LOG.
start_gw() {
  GW_LOG="$M5_TMP/m5gw.log"
  launch_daemon "$M5_BIN/m5gw" write_gw_config "$M5_TMP/m5gw.yaml" "$GW_LOG" GW_MGMT "$@" ||
    { tail -n 30 "$GW_LOG" >&2; fail "m5gw did not become healthy"; }
  GW_PID=$LAUNCH_PID
}

# gw_health: the /healthz JSON into $M5_TMP/health.json.
gw_health() {
  curl -s --max-time 5 -o "$M5_TMP/health.json" "http://127.0.0.1:$GW_MGMT/healthz"
}

# gw_spool_count: messages and reports in the gateway's spool.
gw_spool_count() {
  gw_health
  node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
           process.stdout.write(String(o.spool.messages))' "$M5_TMP/health.json"
}

# wait_spool N SECONDS: until the spool holds N.
wait_spool() {
  local want=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    [[ $(gw_spool_count 2>/dev/null) == "$want" ]] && return 0
    sleep 0.1
  done
  return 1
}

# gw_post OP BODY_FILE CERT_NAME OUT_FILE [extra curl args...]: POSTs to the MSGG listener's
# /msgg-n3gdelivery/v1/OP as m5s would, with $PKI/CERT_NAME.crt (- = no certificate); prints
# the HTTP status (000 when the handshake failed).
gw_post() {
  local op=$1 body=$2 cert=$3 out=$4
  shift 4
  local auth=()
  [[ $cert == - ]] || auth=(--cert "$PKI/$cert.crt" --key "$PKI/$cert.key")
  curl -s --http2 --max-time 10 --cacert "$PKI/ca.crt" "${auth[@]}" \
    -H 'content-type: application/json' --data-binary "@$body" -o "$out" -D "$out.headers" \
    -w '%{http_code}' "$@" "https://localhost:$GW_MSGG/msgg-n3gdelivery/v1/$op" || true
}

# start_standin [EXPIRES_IN]: the m5s stand-in on a fresh port with m5s's certificate. Sets
# STANDIN_PID, STANDIN_URL.
start_standin() {
  pick_ports STANDIN_PORT
  node "$M5_SRC/tests/gateway/core_m5s_standin.mjs" "$STANDIN_PORT" "$PKI/m5s.key" \
    "$PKI/m5s.crt" "$PKI/ca.crt" "$STANDIN_LOG" "$STANDIN_MODE" "$M5_OPENAPI" "${1:-3600}" \
    >"$M5_TMP/standin.out" 2>&1 &
  STANDIN_PID=$!
  track_pid "$STANDIN_PID"
  wait_file_line "$M5_TMP/standin.out" 'listening' 30 "$STANDIN_PID" ||
    fail "the m5s stand-in did not start: $(cat "$M5_TMP/standin.out")"
  STANDIN_URL="https://localhost:$STANDIN_PORT"
}

# standin_lines JS_FILTER: the stand-in's log lines (JSON) for which the filter (an expression
# of `r`) holds, one per line.
standin_lines() {
  node -e 'const f = new Function("r", "return (" + process.argv[2] + ")");
           const fs = require("fs");
           if (!fs.existsSync(process.argv[1])) process.exit(0);
           for (const l of fs.readFileSync(process.argv[1], "utf8").split("\n"))
             if (l && f(JSON.parse(l))) console.log(l);' "$STANDIN_LOG" "$1"
}

# ---- m5gw against the real m5s (core_e2e*.sh) ----------------------------------------------

# write_gw_kind_config FILE KIND [extra YAML lines...]: write_gw_config for the adapter KIND
# (mqtt, sms) instead of the test-only loop kind, whose loop.* keys it drops.
write_gw_kind_config() {
  local file=$1 kind=$2
  shift 2
  write_gw_config "$file" "kind: $kind" "$@"
  sed -i '/^loop:/d' "$file"
}

# start_gw_kind KIND [extra YAML lines...]: start_gw with write_gw_kind_config; GW_PID, GW_LOG.
start_gw_kind() {
  GW_LOG="$M5_TMP/m5gw.log"
  launch_daemon "$M5_BIN/m5gw" write_gw_kind_config "$M5_TMP/m5gw.yaml" "$GW_LOG" GW_MGMT "$@" ||
    fail "m5gw ($1) did not become healthy: $(tail -20 "$GW_LOG")"
  GW_PID=$LAUNCH_PID
}

# gw_add_at_m5s KIND PATTERN: makes the running gateway gw1 a client of the running m5s
# (m5ctl gateway add with the management token): of KIND, its MSGG listener as the delivery
# target, allowed the UE Service IDs PATTERN.
gw_add_at_m5s() {
  timeout 30 "$M5_BIN/m5ctl" gateway add --gw-id gw1 --kind "$1" --target "localhost:$GW_MSGG" \
    --ue-svc-ids "$2" --m5s-admin "$M5S_ADMIN" --admin-token "$M5S_TOKEN_FILE" >ctl.out 2>&1 ||
    m5s_fail "m5ctl gateway add: $(cat ctl.out)"
}
