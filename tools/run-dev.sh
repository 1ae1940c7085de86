#!/usr/bin/env bash
# `make run`: a working development system with no configuration (architecture §9).
# Usage: tools/run-dev.sh BUILD_DIR   (the binaries are in BUILD_DIR/bin)
# Creates the development PKI under ./var/pki on first run, starts m5-aanf with its defaults,
# waits for its /healthz, prints one line starting READY, then waits. Ctrl-C or SIGTERM is
# forwarded to the daemon (by pid) as SIGTERM; it drains and must exit 0 within 5 s.
set -euo pipefail

BUILD=${1:?usage: tools/run-dev.sh BUILD_DIR}
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || {
  echo "run-dev: $BUILD/bin does not exist; build first (make build)" >&2
  exit 1
}
cd "$(dirname "$0")/.." # the repository root: ./var lives here, as the defaults expect
for b in m5-aanf m5ctl; do
  [[ -x $BIN/$b ]] || { echo "run-dev: $BIN/$b is missing; build first (make build)" >&2; exit 1; }
done

HEALTH=http://127.0.0.1:9091/healthz
LOG=var/log/m5-aanf.log
mkdir -p var/log

if [[ ! -f var/pki/ca.crt ]]; then
  "$BIN/m5ctl" pki init --dir var/pki
fi

"$BIN/m5-aanf" >"$LOG" 2>&1 &
AANF_PID=$!

# stop: SIGTERM to the daemon, then wait (bounded) for it; exits with the daemon's status.
stop() {
  trap - INT TERM
  kill -TERM "$AANF_PID" 2>/dev/null || true
  local i rc=0
  for ((i = 0; i < 60; i++)); do
    kill -0 "$AANF_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$AANF_PID" 2>/dev/null; then
    echo "run-dev: m5-aanf (pid $AANF_PID) did not exit within 6 s; killing it" >&2
    kill -KILL "$AANF_PID" 2>/dev/null || true
  fi
  wait "$AANF_PID" 2>/dev/null || rc=$?
  echo "run-dev: m5-aanf stopped (exit $rc)"
  exit "$rc"
}
trap stop INT TERM

# failed WHY: the daemon's log, then exit 1.
failed() {
  echo "run-dev: $1; its log ($LOG):" >&2
  cat "$LOG" >&2
  kill -TERM "$AANF_PID" 2>/dev/null || true
  wait "$AANF_PID" 2>/dev/null || true
  exit 1
}

for ((i = 0; i < 100; i++)); do
  curl -sf --max-time 1 "$HEALTH" >/dev/null 2>&1 && break
  kill -0 "$AANF_PID" 2>/dev/null || failed "m5-aanf exited during start-up"
  sleep 0.1
done
curl -sf --max-time 1 "$HEALTH" >/dev/null 2>&1 || failed "m5-aanf not healthy after 10 s"

echo "READY m5-aanf on https://localhost:7443 (health $HEALTH, log $LOG); try:" \
  "$BIN/m5ctl subscriber add --supi 001010123456789 --kausf <64 hex digits>"

# Ctrl-C reaches the daemon directly too (same process group); it then drains and exits 0,
# and bash may return from wait before running the trap.
rc=0
wait "$AANF_PID" || rc=$?
if [[ $rc -eq 0 ]]; then
  echo "run-dev: m5-aanf stopped (exit 0)"
  exit 0
fi
failed "m5-aanf exited with status $rc"
