# shellcheck shell=bash
# Shared helpers for the shell integration and interop tests (sourced, not run).
# Env from ctest: M5_BIN (m5-aanf, m5ctl), M5_SRC (the repository), M5_TMP (scratch dir).
# Every process a test starts is recorded with track_pid and killed by pid on exit.

: "${M5_BIN:?set M5_BIN to the directory holding m5-aanf and m5ctl}"
: "${M5_SRC:?set M5_SRC to the repository root}"
: "${M5_TMP:?set M5_TMP to a scratch directory for this test}"

M5_OPENAPI="$M5_SRC/spec/openapi"
M5_PIDS=()

rm -rf "$M5_TMP"
mkdir -p "$M5_TMP"
cd "$M5_TMP" || exit 1

track_pid() { M5_PIDS+=("$1"); }

cleanup() {
  local p
  for p in "${M5_PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

# fail MESSAGE: prints the message (and the AAnF's log when one is running) and exits 1.
fail() {
  echo "FAIL: $*" >&2
  if [[ -n "${AANF_LOG:-}" && -f "$AANF_LOG" ]]; then
    echo "--- m5-aanf log (last 30 lines) ---" >&2
    tail -n 30 "$AANF_LOG" >&2
  fi
  exit 1
}

# pick_port: a random loopback TCP port in 20000..32767 that nothing listens on: below Linux's
# ephemeral range (32768..60999), so a client socket of a concurrent test (the AKMA flood opens
# thousands) cannot take it between a daemon's stop and its restart on the same port.
pick_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 12768))
    if ! bash -c "</dev/tcp/127.0.0.1/$p" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  fail "no free port found"
}

# pick_ports VAR...: a distinct free port (pick_port) into each named variable.
pick_ports() {
  local v p used=" "
  for v in "$@"; do
    p=$(pick_port)
    while [[ $used == *" $p "* ]]; do p=$(pick_port); done
    used+="$p "
    printf -v "$v" '%s' "$p"
  done
}

# wait_health PORT PID [SECONDS]: until /healthz answers 200; fails if PID dies first.
wait_health() {
  local port=$1 pid=$2 secs=${3:-10} i
  for ((i = 0; i < secs * 10; i++)); do
    if curl -sf --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# merge_yaml FILE N DEFAULT_LINE... EXTRA_LINE...: writes the N default lines, except those
# whose top-level key an extra line names, then the extra lines ("key: ..." replaces "key: ...").
merge_yaml() {
  local file=$1 n=$2
  shift 2
  local defaults=("${@:1:n}")
  shift "$n"
  local line extra keep
  {
    for line in "${defaults[@]}"; do
      keep=1
      for extra in "$@"; do
        [[ ${extra%%:*} == "${line%%:*}" ]] && keep=0
      done
      ((keep)) && echo "$line"
    done
    for extra in "$@"; do echo "$extra"; done
  } >"$file"
}

# launch_daemon BIN WRITER CONFIG LOG MGMT_VAR [extra YAML lines...]: writes CONFIG with
# WRITER (which picks fresh ports), starts BIN --config CONFIG and waits for /healthz on the
# port named by MGMT_VAR (LAUNCH_SECS, default 10 s); retries when a port was taken meanwhile.
# Sets LAUNCH_PID; returns 1 if the daemon never became healthy.
launch_daemon() {
  local bin=$1 writer=$2 config=$3 log=$4 mgmt_var=$5 _
  shift 5
  for _ in 1 2 3; do
    "$writer" "$config" "$@"
    "$bin" --config "$config" >>"$log" 2>&1 &
    LAUNCH_PID=$!
    track_pid "$LAUNCH_PID"
    wait_health "${!mgmt_var}" "$LAUNCH_PID" "${LAUNCH_SECS:-10}" && return 0
    kill -KILL "$LAUNCH_PID" 2>/dev/null || true
    wait "$LAUNCH_PID" 2>/dev/null || true
    grep -q "already in use" "$log" || break
  done
  return 1
}

# stop_daemon PID NAME: SIGTERM; prints why and returns 1 unless it exits 0 within 5 s.
stop_daemon() {
  local pid=$1 name=$2 i rc=0
  kill -TERM "$pid"
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name still running 5 s after SIGTERM" >&2
    return 1
  fi
  wait "$pid" || rc=$?
  [[ $rc -eq 0 ]] || { echo "$name exited $rc after SIGTERM, want 0" >&2; return 1; }
}

# write_aanf_config FILE [extra YAML lines...]: a config on fresh random ports, using the
# PKI in $M5_TMP/pki and the database $AANF_DB (default $M5_TMP/aanf/aanf.db). An extra line
# "key: ..." replaces the default line for the same top-level key.
write_aanf_config() {
  local file=$1
  shift
  pick_ports AANF_PORT AANF_MGMT
  local defaults=(
    "listen: {host: 127.0.0.1, port: $AANF_PORT}"
    "mgmt: {host: 127.0.0.1, port: $AANF_MGMT}"
    "tls: {cert: $M5_TMP/pki/aanf.crt, key: $M5_TMP/pki/aanf.key, ca: $M5_TMP/pki/ca.crt}"
    "db: {path: ${AANF_DB:-$M5_TMP/aanf/aanf.db}}"
    "workers: 2"
  )
  merge_yaml "$file" "${#defaults[@]}" "${defaults[@]}" "$@"
}

# start_aanf [extra YAML lines...]: starts m5-aanf on random ports and waits for /healthz.
# Sets AANF_PID, AANF_PORT, AANF_MGMT, AANF_URL, AANF_LOG. Retries on a lost port race.
start_aanf() {
  AANF_LOG="$M5_TMP/aanf.log"
  launch_daemon "$M5_BIN/m5-aanf" write_aanf_config "$M5_TMP/aanf.yaml" "$AANF_LOG" AANF_MGMT \
    "$@" || fail "m5-aanf did not become healthy"
  AANF_PID=$LAUNCH_PID
  AANF_URL="https://localhost:$AANF_PORT"
}

# stop_aanf: SIGTERM; it must exit 0 within 5 s.
stop_aanf() { stop_daemon "$AANF_PID" m5-aanf || fail "m5-aanf did not stop cleanly"; }

# make_pki: the development PKI in $M5_TMP/pki.
make_pki() {
  timeout 60 "$M5_BIN/m5ctl" pki init --dir "$M5_TMP/pki" >/dev/null
}

# make_cert NAME SAN [EKU]: an extra client certificate signed by the test CA.
make_cert() {
  local name=$1 san=$2 eku=${3:-clientAuth} d="$M5_TMP/pki"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=critical,CA:FALSE\n' \
    "$san" "$eku" >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
}

# aanf_post PATH BODY_FILE CERT_NAME OUT_FILE [extra curl args...]: POSTs over HTTP/2 with the
# client certificate $M5_TMP/pki/CERT_NAME.crt (CERT_NAME "-" = none); prints the status.
aanf_post() {
  local path=$1 body=$2 cert=$3 out=$4
  shift 4
  local auth=()
  [[ $cert == - ]] || auth=(--cert "$M5_TMP/pki/$cert.crt" --key "$M5_TMP/pki/$cert.key")
  curl -s --http2 --max-time 10 --cacert "$M5_TMP/pki/ca.crt" "${auth[@]}" \
    -H 'content-type: application/json' --data-binary "@$body" -o "$out" \
    -w '%{http_code}' "$@" "$AANF_URL/naanf-akma/v1/$path"
}

# validate YAML_FILE SCHEMA JSON_FILE: the body must match the 3GPP schema. For bodies the
# tests (third parties) send: undeclared members pass, as the schemas allow.
validate() {
  local out
  out=$(node "$M5_SRC/tests/schema/validate.mjs" "$M5_OPENAPI/$1" "$2" "$3" 2>&1) ||
    fail "$3 is not a valid $2 ($1): $out"
}

# validate_sent YAML_FILE SCHEMA JSON_FILE: a body m5s or m5-aanf sent must match the 3GPP
# schema and carry only the members the schemas declare (validate.mjs --strict).
validate_sent() {
  local out
  out=$(node "$M5_SRC/tests/schema/validate.mjs" --strict "$M5_OPENAPI/$1" "$2" "$3" 2>&1) ||
    fail "$3 is not a valid $2 with only its declared members ($1): $out"
}

# json_get FILE MEMBER: a top-level member's value as text (empty if absent).
json_get() {
  node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
           const v = o[process.argv[2]]; if (v !== undefined) process.stdout.write(String(v));' \
    "$1" "$2"
}

# expect_problem FILE STATUS CAUSE [PARAM]: a ProblemDetails with that status and cause and,
# when given, invalidParams[0].param.
expect_problem() {
  local file=$1 status=$2 cause=$3 param=${4:-}
  validate_sent TS29571_CommonData.yaml ProblemDetails "$file"
  [[ $(json_get "$file" status) == "$status" ]] || fail "$file: status $(cat "$file")"
  [[ $(json_get "$file" cause) == "$cause" ]] || fail "$file: want cause $cause: $(cat "$file")"
  if [[ -n $param ]]; then
    local got
    got=$(node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
                   process.stdout.write(o.invalidParams[0].param)' "$file")
    [[ $got == "$param" ]] || fail "$file: want invalidParams param $param: $(cat "$file")"
  fi
}

# ---- m5s (the MSGin5G server) --------------------------------------------------------------

# ---- the message store's backend (issue 13, docs/scale-out.md) --------------------------------
# M5_STORE_BACKEND (environment; default sqlite) chooses the store of every m5s a test starts:
# with "jetstream" (tests/CMakeLists.txt registers the scripts of its M5_JS_SCRIPTS list a
# second time as js/<name> with it), the first write_m5s_config starts one nats-server with
# JetStream on random loopback ports (tests/nats_lib.bash, by pid, killed on exit) and every
# m5s config gets store.backend jetstream, store.js.servers (that server), store.js.replicas 1
# and node.name; parts of a script that only make sense on SQLite (the store file itself) ask
# sqlite_only first.
M5_STORE_BACKEND=${M5_STORE_BACKEND:-sqlite}
case $M5_STORE_BACKEND in
sqlite | jetstream) ;;
*) fail "M5_STORE_BACKEND='$M5_STORE_BACKEND': want sqlite or jetstream" ;;
esac
M5S_NODE_NAME=${M5S_NODE_NAME:-t1}
M5_JS_STARTED=0

# m5s_js_store: the NATS server of this test (started once); sets M5_JS_SERVERS, the flow-list
# body of store.js.servers.
m5s_js_store() {
  if ((!M5_JS_STARTED)); then
    # shellcheck source=tests/nats_lib.bash
    source "$M5_SRC/tests/nats_lib.bash"
    start_nats_cluster 1
    M5_JS_STARTED=1
  fi
  M5_JS_SERVERS=${NATS_URLS//,/, }
}

# m5s_backend_lines DEFAULTS_VAR EXTRAS_VAR: on jetstream, the store backend into the m5s
# config lines: into a "store: {...}" line of the test's (EXTRAS_VAR) when it has one (it
# replaces the default store line), else a default line of its own (DEFAULTS_VAR); and
# node.name. Nothing on sqlite.
m5s_backend_lines() {
  [[ $M5_STORE_BACKEND == jetstream ]] || return 0
  local -n defs=$1 extras=$2
  local i js found=0
  m5s_js_store
  js="backend: jetstream, js: {servers: [$M5_JS_SERVERS], replicas: 1}"
  for i in "${!extras[@]}"; do
    if [[ ${extras[$i]} == "store: {"* ]]; then
      extras[i]="store: {$js, ${extras[$i]#"store: {"}"
      found=1
    fi
  done
  ((found)) || defs+=("store: {$js}")
  defs+=("node: {name: $M5S_NODE_NAME}")
}

# sqlite_only WHAT: true on the SQLite store; on another backend it says that WHAT is skipped
# (a part of a script about the SQLite file itself) and is false.
sqlite_only() {
  [[ $M5_STORE_BACKEND == sqlite ]] && return 0
  echo "skipped on store.backend $M5_STORE_BACKEND: $1"
  return 1
}

# m5s_start_secs: how long start_m5s / restart_m5s wait for /healthz (JetStream: the streams
# and buckets are created or checked first, longer under sanitizers on loaded cores).
m5s_start_secs() { if [[ $M5_STORE_BACKEND == jetstream ]]; then echo 60; else echo "$1"; fi; }

# write_m5s_config FILE [extra YAML lines...]: an m5s config on fresh random ports (ue.port is
# the same number on udp and tcp), talking to the running m5-aanf ($AANF_URL) with the m5s
# certificate of $M5_TMP/pki; FQDN localhost; database $M5S_DB (default $M5_TMP/m5s/m5s.db);
# the store of M5_STORE_BACKEND (m5s_backend_lines).
# An extra line "key: ..." replaces the default line for the same top-level key.
write_m5s_config() {
  local file=$1
  shift
  local extra=("$@")
  pick_ports M5S_PORT M5S_MGMT M5S_NORTH
  local defaults=(
    "ue: {host: 127.0.0.1, port: $M5S_PORT}"
    "mgmt: {host: 127.0.0.1, port: $M5S_MGMT}"
    "north: {host: 127.0.0.1, port: $M5S_NORTH}"
    "oauth: {key: $M5_TMP/pki/m5s-token.key}"
    "aanf: {url: ${AANF_URL:-https://localhost:7443}}"
    "tls: {cert: $M5_TMP/pki/m5s.crt, key: $M5_TMP/pki/m5s.key, ca: $M5_TMP/pki/ca.crt}"
    "server: {fqdns: [localhost]}"
    "db: {path: ${M5S_DB:-$M5_TMP/m5s/m5s.db}}"
    "workers: 2"
    "log: {level: debug}"
  )
  m5s_backend_lines defaults extra
  merge_yaml "$file" "${#defaults[@]}" "${defaults[@]}" "${extra[@]}"
}

# use_test_hooks: HOOKS, a fresh directory m5s arms its test hooks from (M5_TEST_HOOK_DIR,
# exported for the m5s started next; honoured by test builds only, src/server/test_hooks.h):
# a test creates a file named after a hook point in it to arm that point.
use_test_hooks() {
  HOOKS=$M5_TMP/hooks
  mkdir -p "$HOOKS"
  export M5_TEST_HOOK_DIR=$HOOKS
}

# start_m5s [extra YAML lines...]: starts m5s (after start_aanf) on random ports and waits for
# its /healthz. Sets M5S_PID, M5S_PORT (MSGin5G-1, udp and tcp), M5S_MGMT, M5S_ADMIN (the
# management base URL for m5ctl --m5s-admin), M5S_NORTH (the northbound port), M5S_LOG.
# Retries on a lost port race.
start_m5s() {
  M5S_LOG="$M5_TMP/m5s.log"
  LAUNCH_SECS=$(m5s_start_secs 10) launch_daemon "$M5_BIN/m5s" write_m5s_config \
    "$M5_TMP/m5s.yaml" "$M5S_LOG" M5S_MGMT "$@" || m5s_fail "m5s did not become healthy"
  M5S_PID=$LAUNCH_PID
  M5S_ADMIN="http://127.0.0.1:$M5S_MGMT"
}

# The management token m5s writes at its first start (mgmt.token_file's default
# var/m5s/admin.token, relative to $M5_TMP where the daemons and m5ctl run, so m5ctl finds it by
# its default path too).
M5S_TOKEN_FILE="$M5_TMP/var/m5s/admin.token"

# admin_curl CURL_ARGS...: curl with "authorization: Bearer <the management token>", for the
# admin API calls that change or read state (all but GET /healthz, /metrics, /admin/v1/stats).
admin_curl() {
  [[ -s $M5S_TOKEN_FILE ]] || m5s_fail "no management token in $M5S_TOKEN_FILE (m5s not started?)"
  curl -H "authorization: Bearer $(<"$M5S_TOKEN_FILE")" "$@"
}

# ctl ARGS...: m5ctl against the running m5s's management API, with its token (a test that
# needs another form defines its own).
ctl() { timeout 30 "$M5_BIN/m5ctl" "$@" --m5s-admin "$M5S_ADMIN" --admin-token "$M5S_TOKEN_FILE"; }

# restart_m5s: m5s again with the same config (ports, store) after it died or was stopped, or
# to pick up what a test changed in its store (a trigger); waits for /healthz. A port the old
# process still holds is tried again (3 times).
restart_m5s() {
  local _
  for _ in 1 2 3; do
    "$M5_BIN/m5s" --config "$M5_TMP/m5s.yaml" >>"$M5S_LOG" 2>&1 &
    M5S_PID=$!
    track_pid "$M5S_PID"
    wait_health "$M5S_MGMT" "$M5S_PID" "$(m5s_start_secs 15)" && return 0
    kill -KILL "$M5S_PID" 2>/dev/null || true
    wait "$M5S_PID" 2>/dev/null || true
    sleep 0.5 # a port still held: try again
  done
  m5s_fail "m5s did not come back on the same ports"
}

# block_rebind_while_stored: stops m5s, makes its message store refuse every write of a binding
# generation (what a re-bind's REBIND commits) while a message with msgId "rebind-block" is
# stored (as a full disk would refuse it; SQLite triggers, driven from outside m5s), and
# starts m5s again: the tests of a failed REBIND lift the refusal by delivering that
# message.
block_rebind_while_stored() {
  local store=$M5_TMP/m5s/store.db
  stop_m5s
  [[ -f $store ]] || fail "no store at $store"
  sqlite3 "$store" "CREATE TRIGGER hold_gen_ins BEFORE INSERT ON binding_gens
    WHEN EXISTS (SELECT 1 FROM messages WHERE msg_id = 'rebind-block')
    BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;
  CREATE TRIGGER hold_gen_upd BEFORE UPDATE ON binding_gens
    WHEN EXISTS (SELECT 1 FROM messages WHERE msg_id = 'rebind-block')
    BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
  restart_m5s
}

# stop_m5s: SIGTERM; it must exit 0 within 5 s.
stop_m5s() { stop_daemon "$M5S_PID" m5s || m5s_fail "m5s did not stop cleanly"; }

# m5s_fail MESSAGE: fail, with the last lines of the m5s log first.
m5s_fail() {
  if [[ -n "${M5S_LOG:-}" && -f "$M5S_LOG" ]]; then
    echo "--- m5s log (last 40 lines) ---" >&2
    tail -n 40 "$M5S_LOG" >&2
  fi
  fail "$@"
}

# akma_derive SUPI KAUSF UA: `m5ctl akma derive` for the AF localhost (lines key=value: akid,
# kakma, kaf, ...). UA: tls13, or tls12:<suite id> such as tls12:00a8.
akma_derive() {
  "$M5_BIN/m5ctl" akma derive --supi "$1" --kausf "$2" --af-fqdn localhost --ua "$3"
}

# kv_field KEY: the value of the "KEY=value" line on stdin.
kv_field() { sed -n "s/^$1=//p"; }

# provision_ue UE_SVC_ID SUPI KAUSF: registers the subscriber's K_AKMA at the AAnF and binds
# the UE Service ID to the SUPI in m5s (m5ctl subscriber add, through the real APIs).
# (An m5ctl without --ue-svc-id: K_AKMA through m5ctl, the binding by PUT on m5s's admin API.)
provision_ue() {
  local out st
  if "$M5_BIN/m5ctl" subscriber add --help 2>&1 | grep -q -- --ue-svc-id; then
    out=$("$M5_BIN/m5ctl" subscriber add --supi "$2" --kausf "$3" --ue-svc-id "$1" \
      --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" --pki "$M5_TMP/pki" 2>&1) ||
      m5s_fail "m5ctl subscriber add ($1): $out"
    return 0
  fi
  out=$("$M5_BIN/m5ctl" subscriber add --supi "$2" --kausf "$3" --aanf "$AANF_URL" \
    --pki "$M5_TMP/pki" 2>&1) || m5s_fail "m5ctl subscriber add ($1): $out"
  st=$(admin_curl -s --max-time 10 -X PUT -H 'content-type: application/json' \
    --data-binary "{\"supi\":\"$2\"}" -o "$M5_TMP/bind-$1.out" -w '%{http_code}' \
    "$M5S_ADMIN/admin/v1/bindings/$1")
  [[ $st == 20? ]] || m5s_fail "binding $1 -> $2: HTTP $st $(cat "$M5_TMP/bind-$1.out")"
}

# wait_file_line FILE REGEX SECONDS [PID]: until FILE has a line matching REGEX; 1 on timeout
# or when PID (if given) has exited first.
wait_file_line() {
  local file=$1 re=$2 secs=$3 pid=${4:-} i
  for ((i = 0; i < secs * 10; i++)); do
    grep -Eq -- "$re" "$file" 2>/dev/null && return 0
    [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || {
      grep -Eq -- "$re" "$file" 2>/dev/null
      return
    }
    sleep 0.1
  done
  return 1
}

# wait_pid_rc PID SECONDS: waits for a background child of this shell and sets WAIT_RC to its
# exit status (124 when it still ran after SECONDS: it is then killed). Not in $(...): a
# subshell cannot wait for its parent's children.
wait_pid_rc() {
  local pid=$1 secs=$2 i
  WAIT_RC=0
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    WAIT_RC=124
    return 0
  fi
  # shellcheck disable=SC2034 # read by the caller
  wait "$pid" || WAIT_RC=$?
}

# ---- m5c (our MSGin5G client) as a peer of interop tests --------------------------------------

# m5c_config UE SUPI KAUSF: $M5_TMP/UE.yaml with the UE's AKMA credentials (AF localhost).
m5c_config() {
  printf 'ue-svc-id: %s\nsupi: "%s"\nkausf: "%s"\naf-fqdn: localhost\n' "$1" "$2" "$3" \
    >"$M5_TMP/$1.yaml"
}

# setup_ue UE SUPI KAUSF: provision_ue, then m5c_config: the UE exists at the AAnF and in m5s,
# and $M5_TMP/UE.yaml holds its client configuration.
setup_ue() {
  provision_ue "$@"
  m5c_config "$@"
}

# m5c_uri dtls|tls: the running m5s's MSGin5G-1 URI for that transport.
m5c_uri() {
  if [[ $1 == dtls ]]; then echo "coaps://127.0.0.1:$M5S_PORT"; else
    echo "coaps+tcp://127.0.0.1:$M5S_PORT"; fi
}

# m5s_log_count REGEX: lines of the m5s log matching REGEX.
m5s_log_count() { grep -Ec -- "$1" "$M5S_LOG" || true; }

# m5c_listen_start UE dtls|tls OUT: m5c_listen_bg for one message within 30 s.
m5c_listen_start() { m5c_listen_bg "$1" "$2" "$3" 1 30; }

# m5c_send UE dtls|tls DEST TEXT OUT: `m5c send` from UE to ue:DEST; its status is returned.
m5c_send() {
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$1.yaml" --server "$(m5c_uri "$2")" \
    send --to "ue:$3" --payload "$4" >"$5" 2>&1
}

# m5c_listen_bg UE dtls|tls OUT COUNT SECONDS: `m5c listen --count COUNT --timeout SECONDS` in
# the background (M5C_LISTEN_PID), returning once m5s has logged the UE's registration
# ("<UE>: registered").
m5c_listen_bg() {
  local ue=$1 tr=$2 out=$3 count=$4 secs=$5 before i
  before=$(m5s_log_count "[: ]$ue: registered")
  "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri "$tr")" listen \
    --count "$count" --timeout "$secs" >"$out" 2>&1 &
  M5C_LISTEN_PID=$!
  track_pid "$M5C_LISTEN_PID"
  for ((i = 0; i < 150; i++)); do
    (($(m5s_log_count "[: ]$ue: registered") > before)) && return 0
    kill -0 "$M5C_LISTEN_PID" 2>/dev/null || m5s_fail "m5c listen ($ue, $tr) exited: $(cat "$out")"
    sleep 0.1
  done
  m5s_fail "m5c listen ($ue, $tr) did not register within 15 s: $(cat "$out")"
}

# start_push_receiver SCRIPT PORT LOG MODE_FILE OUT [CERT]: a node stand-in receiving what m5s
# pushes (SCRIPT: tests/interop/as_server.mjs, an AS; tests/it/gw_receiver.mjs, a gateway; both
# tests/schema/push_receiver.mjs) on PORT with the test PKI's certificate CERT (default aanf:
# its host name is all an AS's endpoint needs; a gateway's must name the gateway): one JSON line a
# request into LOG, answered with MODE_FILE's status (default 204); its output in OUT. Returns
# once it listens, with its pid in PUSH_RECEIVER_PID.
start_push_receiver() {
  local script=$1 port=$2 log=$3 mode=$4 out=$5 crt=${6:-aanf} pki=$M5_TMP/pki
  node "$M5_SRC/$script" "$port" "$pki/$crt.key" "$pki/$crt.crt" "$pki/ca.crt" "$log" "$mode" \
    "$M5_OPENAPI" >"$out" 2>&1 &
  PUSH_RECEIVER_PID=$!
  track_pid "$PUSH_RECEIVER_PID"
  wait_file_line "$out" 'listening' 30 || fail "$script did not start: $(cat "$out")"
}

# provision_load_pairs PAIRS: the UEs of `m5load --pairs PAIRS` (its --print-subscribers lines
# "UE SUPI KAUSF") at the running m5-aanf and m5s, one `m5ctl subscriber add` each.
provision_load_pairs() {
  local ue supi kausf
  "$M5_BIN/m5load" --print-subscribers --pairs "$1" >subs.txt
  while read -r ue supi kausf; do
    "$M5_BIN/m5ctl" subscriber add --ue-svc-id "$ue" --supi "$supi" --kausf "$kausf" \
      --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" --pki "$M5_TMP/pki" >/dev/null ||
      fail "provisioning $ue"
  done <subs.txt
}

# listen_ids OUT: the msgIds of the JSON lines an m5c listener printed into OUT, in order, one
# per line.
listen_ids() {
  /usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]):
    l = l.strip()
    if l.startswith("{"):
        print(json.loads(l).get("msgId"))' "$1"
}

# now_ms: wall clock in milliseconds.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# as1_client: the AS client as1 on m5s (targets 127.0.0.1:9, no registration), and TOKEN, an
# access token for it from m5s's token endpoint. nb PATH [curl args]: a northbound request as
# as1 (its certificate), status in ST and body in out.json.
nb() {
  local path=$1
  shift
  ST=$(curl -s --http2 --max-time 15 --cacert "$M5_TMP/pki/ca.crt" --cert "$M5_TMP/pki/as1.crt" \
    --key "$M5_TMP/pki/as1.key" -o out.json -w '%{http_code}' "$@" "https://localhost:$M5S_NORTH$path")
}
as1_client() {
  ST=$(admin_curl -s -o as1.json -w '%{http_code}' -X PUT -H 'content-type: application/json' \
    -d '{"targets":["127.0.0.1:9"]}' "$M5S_ADMIN/admin/v1/as-clients/as1")
  [[ $ST == 20? ]] || m5s_fail "PUT as-client as1: $ST $(cat as1.json)"
  nb /oauth2/token -d grant_type=client_credentials
  [[ $ST == 200 ]] || m5s_fail "AS token: $ST $(cat out.json)"
  TOKEN=$(json_get out.json access_token)
}
