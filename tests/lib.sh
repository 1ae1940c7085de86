# shellcheck shell=bash
# Shared helpers for the shell integration and interop tests (sourced, not run).
# Env from ctest: M5_BIN (m5-aanf, m5ctl), M5_SRC (the repository), M5_TMP (scratch dir).
# Every process a test starts is recorded with track_pid and killed by pid on exit.

: "${M5_BIN:?set M5_BIN to the directory holding m5-aanf and m5ctl}"
: "${M5_SRC:?set M5_SRC to the repository root}"
: "${M5_TMP:?set M5_TMP to a scratch directory for this test}"

M5_OPENAPI="$M5_SRC/../shared/spec/openapi"
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

# pick_port: a random loopback TCP port in 20000..60000 that nothing listens on.
pick_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 40001))
    if ! bash -c "</dev/tcp/127.0.0.1/$p" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  fail "no free port found"
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

# write_aanf_config FILE [extra YAML lines...]: a config on fresh random ports, using the
# PKI in $M5_TMP/pki and the database $AANF_DB (default $M5_TMP/aanf/aanf.db). An extra line
# "key: ..." replaces the default line for the same top-level key.
write_aanf_config() {
  local file=$1
  shift
  AANF_PORT=$(pick_port)
  AANF_MGMT=$(pick_port)
  [[ $AANF_PORT != "$AANF_MGMT" ]] || AANF_MGMT=$(pick_port)
  local defaults=(
    "listen: {host: 127.0.0.1, port: $AANF_PORT}"
    "mgmt: {host: 127.0.0.1, port: $AANF_MGMT}"
    "tls: {cert: $M5_TMP/pki/aanf.crt, key: $M5_TMP/pki/aanf.key, ca: $M5_TMP/pki/ca.crt}"
    "db: {path: ${AANF_DB:-$M5_TMP/aanf/aanf.db}}"
    "workers: 2"
  )
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

# start_aanf [extra YAML lines...]: starts m5-aanf on random ports and waits for /healthz.
# Sets AANF_PID, AANF_PORT, AANF_MGMT, AANF_URL, AANF_LOG. Retries on a lost port race.
start_aanf() {
  local _
  AANF_LOG="$M5_TMP/aanf.log"
  for _ in 1 2 3; do
    write_aanf_config "$M5_TMP/aanf.yaml" "$@"
    "$M5_BIN/m5-aanf" --config "$M5_TMP/aanf.yaml" >>"$AANF_LOG" 2>&1 &
    AANF_PID=$!
    track_pid "$AANF_PID"
    AANF_URL="https://localhost:$AANF_PORT"
    if wait_health "$AANF_MGMT" "$AANF_PID" 10; then
      return 0
    fi
    kill -KILL "$AANF_PID" 2>/dev/null || true
    wait "$AANF_PID" 2>/dev/null || true
    grep -q "Address already in use" "$AANF_LOG" || break
  done
  fail "m5-aanf did not become healthy"
}

# stop_aanf: SIGTERM; it must exit 0 within 5 s.
stop_aanf() {
  local i rc=0
  kill -TERM "$AANF_PID"
  for ((i = 0; i < 50; i++)); do
    kill -0 "$AANF_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$AANF_PID" 2>/dev/null && fail "m5-aanf still running 5 s after SIGTERM"
  wait "$AANF_PID" || rc=$?
  [[ $rc -eq 0 ]] || fail "m5-aanf exited $rc after SIGTERM, want 0"
}

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

# validate YAML_FILE SCHEMA JSON_FILE: the body must match the 3GPP schema.
validate() {
  local out
  out=$(node "$M5_SRC/tests/schema/validate.mjs" "$M5_OPENAPI/$1" "$2" "$3" 2>&1) ||
    fail "$3 is not a valid $2 ($1): $out"
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
  validate TS29571_CommonData.yaml ProblemDetails "$file"
  [[ $(json_get "$file" status) == "$status" ]] || fail "$file: status $(cat "$file")"
  [[ $(json_get "$file" cause) == "$cause" ]] || fail "$file: want cause $cause: $(cat "$file")"
  if [[ -n $param ]]; then
    local got
    got=$(node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
                   process.stdout.write(o.invalidParams[0].param)' "$file")
    [[ $got == "$param" ]] || fail "$file: want invalidParams param $param: $(cat "$file")"
  fi
}
