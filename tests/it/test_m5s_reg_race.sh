#!/usr/bin/env bash
# Integration: a REG racing a change of its binding is refused, deterministically (issue 9
# point 11; docs/delivery.md "Re-bound UE Service IDs"). A REG is checked three times: by the
# worker (lookup), by the registry's job when it runs (REGISTRY_REGISTER: M5_EPERM when the
# binding is gone, names another SUPI or has another generation), and by the worker again
# after that write (done_reg, once the session is in the router: the admin API's CLOSE may
# have found no session yet). Test hooks (M5_TEST_HOOKS, test builds only) hold the REG in
# each window while this script changes the binding:
#  - "reg-write": held after the registry's write; ue1 is re-bound to another SUPI in that
#    window (its CLOSE finds no session); the REG must get 4.03 and leave no registration,
#    which fails if the re-check after the write is removed;
#  - "reg-lookup": held between the lookup and the registry's job; ue1 is re-bound back in
#    that window; 4.03 and no registration, which fails if the job's check is removed;
#  - the same with an un-bind and a re-creation for the same SUPI (only the generation
#    tells the two bindings apart).
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
SUPI1=001010000000901
KAUSF1=5151515151515151515151515151515151515151515151515151515151515151
SUPI1B=001010000000911
KAUSF1B=6161616161616161616161616161616161616161616161616161616161616161
RAW="$M5_SRC/tests/interop/coap_raw.py"

make_pki
start_aanf
use_test_hooks
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
"$M5_BIN/m5ctl" subscriber add --supi "$SUPI1B" --kausf "$KAUSF1B" --aanf "$AANF_URL" \
  --pki "$M5_TMP/pki" >aanf1b.out 2>&1 || m5s_fail "K_AKMA of $SUPI1B: $(cat aanf1b.out)"

# bind SUPI: PUT ue1's binding (m5ctl's path, without the AAnF part).
bind() {
  local st
  st=$(admin_curl -s --max-time 10 -X PUT -H 'content-type: application/json' \
    -d "{\"supi\":\"$1\"}" -o bind.json -w '%{http_code}' "$M5S_ADMIN/admin/v1/bindings/ue1")
  [[ $st == 20? ]] || m5s_fail "PUT ue1 -> $1: $st $(cat bind.json)"
}
unbind() {
  local st
  st=$(admin_curl -s --max-time 10 -X DELETE -o del.json -w '%{http_code}' \
    "$M5S_ADMIN/admin/v1/bindings/ue1")
  [[ $st == 200 ]] || m5s_fail "DELETE ue1: $st $(cat del.json)"
}
registered() {
  admin_curl -s --max-time 10 "$M5S_ADMIN/admin/v1/bindings/ue1" >get.json
  json_get get.json registered
}

# race POINT SUPI KAUSF CHANGE...: a REG as ue1 by that subscriber, held at POINT while the
# shell command CHANGE runs; the REG must get 4.03 and leave ue1 unregistered.
race() {
  local point=$1 supi=$2 kausf=$3 akid kaf pid i
  shift 3
  akid=$(akma_derive "$supi" "$kausf" tls13 | kv_field akid)
  kaf=$(akma_derive "$supi" "$kausf" tls13 | kv_field kaf)
  rm -f "$HOOKS/$point.reached"
  touch "$HOOKS/$point"
  timeout 60 "$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$kaf" --akid "$akid" --timeout 30 \
    -- reg:ue1 "expect:4.03:diag~not bound" >"race-$point.out" 2>&1 &
  pid=$!
  track_pid "$pid"
  for ((i = 0; i < 200; i++)); do
    [[ -e $HOOKS/$point.reached ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -e $HOOKS/$point.reached ]] ||
    m5s_fail "the REG was not held at $point (an m5s without M5_TEST_HOOKS?): $(cat "race-$point.out")"
  "$@"
  rm -f "$HOOKS/$point"
  wait_pid_rc "$pid" 40
  [[ $WAIT_RC == 0 ]] ||
    m5s_fail "REG held at $point across a binding change was not refused: $(cat "race-$point.out")"
  [[ $(registered) == false ]] || m5s_fail "a registration exists after the race at $point: $(cat get.json)"
}

# The REG of the first subscriber, held after its registry write; ue1 goes to another SUPI.
race reg-write "$SUPI1" "$KAUSF1" bind "$SUPI1B"
grep -q 'REG ue1 refused: its binding changed while it was being stored' "$M5S_LOG" ||
  m5s_fail "the refusal did not come from the re-check after the write"
echo "ok: a re-bind after the REG's registry write: 4.03, no registration"
# The REG of the second subscriber, held before its registry job; ue1 goes back.
race reg-lookup "$SUPI1B" "$KAUSF1B" bind "$SUPI1"
echo "ok: a re-bind between the REG's lookup and its registry write: 4.03, no registration"
# Remove and create again for the same SUPI: only the generation differs.
race reg-lookup "$SUPI1" "$KAUSF1" eval 'unbind; bind "$SUPI1"'
race reg-write "$SUPI1" "$KAUSF1" eval 'unbind; bind "$SUPI1"'
echo "ok: removed and created again for the same SUPI in either window: 4.03, no registration"
# Without a change in the window, the same REG succeeds (the hooks only hold it).
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" register \
  >reg.out 2>&1 || m5s_fail "ue1 register: $(cat reg.out)"
[[ $(registered) == true ]] || m5s_fail "ue1 not registered: $(cat get.json)"
stop_m5s
stop_aanf
echo "PASS"
