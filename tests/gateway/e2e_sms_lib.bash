# shellcheck shell=bash
# Shared set-up of the SMS gateway's end-to-end tests (tests/gateway/e2e_sms_*.sh), sourced
# after tests/lib.sh: the real m5-aanf, m5s, m5gw of kind sms, m5c as the UE ue1, m5ctl, and
# the npm `smpp` SMSC of tests/gateway/e2e_sms_smsc.mjs driven through a FIFO. The device sm1
# has the MSISDN $SM1; devices send to ue1 at the short code 2000 and to the AS as1 at 1000.
source "$M5_SRC/tests/gateway/core_lib.bash"

SM1=491700000001
SMSC_OUT="$M5_TMP/smsc.out"
SUBMITS="$M5_TMP/submits.jsonl"


# ---- the SMSC ----------------------------------------------------------------------------------

# smsc_start: the SMSC on a random port (SMSC_PORT, SMSC_PID); commands go in through SMSC_FD.
smsc_start() {
  mkfifo "$M5_TMP/smsc.in"
  node "$M5_SRC/tests/gateway/e2e_sms_smsc.mjs" "$SUBMITS" <"$M5_TMP/smsc.in" >"$SMSC_OUT" 2>&1 &
  SMSC_PID=$!
  track_pid "$SMSC_PID"
  exec {SMSC_FD}>"$M5_TMP/smsc.in"
  wait_file_line "$SMSC_OUT" '^PORT ' 30 "$SMSC_PID" || fail "the SMSC did not start: $(cat "$SMSC_OUT")"
  SMSC_PORT=$(sed -n 's/^PORT //p' "$SMSC_OUT")
}

# smsc COMMAND...: one command to the SMSC (e2e_sms_smsc.mjs lists them).
smsc() { echo "$*" >&"$SMSC_FD"; }

# smsc_sync: every command sent before has been carried out.
smsc_sync() {
  local n i
  n=$(grep -c '^PONG$' "$SMSC_OUT" || true)
  smsc ping
  for ((i = 0; i < 100; i++)); do
    (($(grep -c '^PONG$' "$SMSC_OUT" || true) > n)) && return 0
    sleep 0.1
  done
  fail "the SMSC does not answer ping: $(tail -5 "$SMSC_OUT")"
}

# smsc_wait REGEX SECONDS WHAT: until the SMSC printed a matching line, else fail naming WHAT.
smsc_wait() {
  wait_file_line "$SMSC_OUT" "$1" "$2" "$SMSC_PID" ||
    m5s_fail "$3: no '$1' from the SMSC within $2 s: $(tail -20 "$SMSC_OUT"; gw_tail)"
}

# smsc_count REGEX: the SMSC's lines matching REGEX.
smsc_count() { grep -Ec -- "$1" "$SMSC_OUT" || true; }

# gw_tail: the gateway's last log lines (for failure messages).
gw_tail() { echo "--- m5gw log ---"; tail -n 25 "${GW_LOG:-/dev/null}"; }

# jcheck FILE EXPR [WHAT]: EXPR (JavaScript over L, the JSON lines of FILE; others are skipped)
# must be true, else fail showing FILE.
jcheck() {
  local out
  out=$(node -e '
    const fs = require("fs");
    const L = fs.readFileSync(process.argv[1], "utf8").split("\n").flatMap((l) => {
      const j = l.indexOf("{");
      if (j < 0) return [];
      try { return [JSON.parse(l.slice(j))]; } catch { return []; } });
    const b64 = (s) => Buffer.from(s, "utf8").toString("base64");
    const ok = new Function("L", "b64", "return (" + process.argv[2] + ")")(L, b64);
    if (!ok) { console.log(JSON.stringify(L, null, 1)); process.exit(1); }' "$1" "$2" 2>&1) ||
    m5s_fail "${3:-check} failed: $2 over $1: $out"
}

# submits_check EXPR [WHAT]: jcheck over the submit_sm the SMSC got (L).
submits_check() { jcheck "$SUBMITS" "$1" "${2:-submit_sm}"; }

# hexof TEXT: TEXT's UTF-8 octets in hex; ucs2of TEXT: as UTF-16BE.
hexof() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
ucs2of() { node -e 'process.stdout.write(Buffer.from(process.argv[1], "utf16le").swap16().toString("hex"))' "$1"; }

# ---- the gateway -------------------------------------------------------------------------------

# GW_SMS_EXTRA: more sms.* members (", window: 2"), written into the config.
write_gw_sms() {
  local file=$1
  shift
  write_gw_config "$file" "kind: sms" \
    "sms: {host: 127.0.0.1, port: $SMSC_PORT, system_id: gw1, password: pw, devices: ['$SM1=sm1'], routes: ['1000=AS:as1', '2000=UE:ue1', '3000=UE:nobody'], reconnect_min_ms: 100, reconnect_max_ms: 400, throttle_retry_ms: 300, response_timeout_ms: 3000${GW_SMS_EXTRA:-}}" \
    "$@"
  sed -i '/^loop:/d' "$file"
}

# gw_sms_start: m5gw of kind sms towards the running m5s (GW_PID, GW_LOG, GW_MSGG, GW_MGMT).
gw_sms_start() {
  STANDIN_URL="https://localhost:$M5S_NORTH"
  GW_LOOP_LOG=/dev/null
  GW_LOG="$M5_TMP/m5gw.log"
  launch_daemon "$M5_BIN/m5gw" write_gw_sms "$M5_TMP/m5gw.yaml" "$GW_LOG" GW_MGMT ||
    m5s_fail "m5gw (sms) did not become healthy: $(tail -20 "$GW_LOG")"
  GW_PID=$LAUNCH_PID
}

# gw_sms_restart: m5gw again with the same configuration file, ports and spool.
gw_sms_restart() {
  "$M5_BIN/m5gw" --config "$M5_TMP/m5gw.yaml" >>"$GW_LOG" 2>&1 &
  GW_PID=$!
  track_pid "$GW_PID"
  wait_health "$GW_MGMT" "$GW_PID" 15 || m5s_fail "m5gw did not restart: $(gw_tail)"
}


# e2e_sms_setup: PKI, m5-aanf, m5s, the UE ue1, the SMSC, the gateway gw1 (m5ctl gateway add,
# pattern 'sm*'), bound to the SMSC with sm1 registered at m5s.
e2e_sms_setup() {
  "$M5_SRC/tests/schema/ensure-node-deps.sh" >/dev/null
  gw_pki
  start_aanf
  start_m5s
  setup_ue ue1 001010000000811 b1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0
  smsc_start
  gw_sms_start
  ctl gateway add --gw-id gw1 --kind sms --target "localhost:$GW_MSGG" --ue-svc-ids 'sm*' \
    >ctl.out 2>&1 || m5s_fail "m5ctl gateway add: $(cat ctl.out)"
  smsc_wait '^BIND 1 gw1$' 30 "m5gw did not bind"
  wait_file_line "$GW_LOG" 'registration of sm1: done' 30 "$GW_PID" ||
    m5s_fail "sm1 not registered: $(gw_tail)"
}

# ---- the UE and the AS -------------------------------------------------------------------------

# ue_send OUT TEXT [m5c send options...]: ue1 sends TEXT to sm1 over TLS; MSGID is its msgId
# (from the MSGRESP: OUT also has what m5s pushed to ue1 on that session).
ue_send() {
  local out=$1 text=$2
  shift 2
  timeout 30 "$M5_BIN/m5c" --config ue1.yaml --server "$(m5c_uri tls)" send --to ue:sm1 \
    --payload "$text" "$@" >"$out" 2>&1 || m5s_fail "m5c send: $(cat "$out")"
  MSGID=$(grep '"msgType":"MSGRESP"' "$out" | sed -n 's/.*"msgId":"\([^"]*\)".*/\1/p' | head -n 1)
  [[ -n $MSGID ]] || fail "no msgId in the answer: $(cat "$out")"
}

# as_start: the AS server of tests/interop/as_server.mjs (AS_LOG: one JSON line per request m5s
# made, each body checked against TS 29.538), the AS client as1 registered at m5s with its
# targetUri; AS_TOKEN for the northbound API.
as_start() {
  local pki=$M5_TMP/pki
  pick_ports AS_PORT
  AS_LOG=$M5_TMP/as.log
  : >"$AS_LOG"
  echo 204 >"$M5_TMP/as.mode"
  node "$M5_SRC/tests/interop/as_server.mjs" "$AS_PORT" "$pki/aanf.key" "$pki/aanf.crt" \
    "$pki/ca.crt" "$AS_LOG" "$M5_TMP/as.mode" "$M5_OPENAPI" >"$M5_TMP/as_server.out" 2>&1 &
  track_pid $!
  wait_file_line "$M5_TMP/as_server.out" 'listening' 30 || fail "the AS server did not start"
  admin_curl -s -o /dev/null -X PUT -H 'content-type: application/json' \
    -d "{\"targets\":[\"localhost:$AS_PORT\"]}" "$M5S_ADMIN/admin/v1/as-clients/as1"
  as_call /oauth2/token -d grant_type=client_credentials
  [[ $ST == 200 ]] || m5s_fail "AS token: $ST $(cat as.out)"
  AS_TOKEN=$(json_get as.out access_token)
  as_call /msgs-asregistration/v1/registrations -H "authorization: Bearer $AS_TOKEN" \
    -H 'content-type: application/json' \
    -d "{\"asSvcId\":\"as1\",\"targetUri\":\"https://localhost:$AS_PORT/msgin5g/\"}"
  [[ $ST == 201 ]] || m5s_fail "as1 registration: $ST $(cat as.out)"
}

# as_call PATH [curl args...]: a northbound request as as1 (its certificate): ST, as.out.
as_call() {
  local path=$1 pki=$M5_TMP/pki
  shift
  ST=$(curl -s --http2 --max-time 15 --cacert "$pki/ca.crt" --cert "$pki/as1.crt" \
    --key "$pki/as1.key" -o as.out -w '%{http_code}' "$@" "https://localhost:$M5S_NORTH$path")
}

# as_bodies OP: the bodies m5s POSTed to the AS's OP (deliver-message, deliver-report), one
# JSON per line, each checked against its schema by the AS server.
as_bodies() {
  node -e 'const fs = require("fs");
    for (const l of fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
      const r = JSON.parse(l);
      if (r.path !== "/msgin5g/" + process.argv[2]) continue;
      if (r.schema !== "ok") { console.error("schema: " + JSON.stringify(r.schema)); process.exit(1); }
      console.log(r.body); }' "$AS_LOG" "$1"
}
