#!/usr/bin/env bash
# Integration: a re-bound UE Service ID starts clean (docs/delivery.md "Re-bound UE Service
# IDs"; issue 9 point 3). Real m5-aanf, m5s (two workers), m5ctl, m5c, and raw MSGin5G-1
# clients (coap_raw.py over openssl s_client) where a step must be exact:
#  - ue2 is offline with stored messages from ue1 (one with delivStReqInd, one without) and
#    from an AS (with delivStReqInd); ue1 also has a stored message for ue3 (delivStReqInd);
#  - `m5ctl subscriber add` with the SUPI ue2 already has changes nothing: its queue stays
#    (failed_deliveries=0), as `make run` relies on at every start;
#  - `m5ctl subscriber add --ue-svc-id ue2` with another SUPI re-binds it (exit 0) and prints
#    failed_deliveries=3; the new subscriber registers as ue2 and gets none of them; ue1 gets
#    exactly one IMDN REPT_DELY_FAILED / RECIPIENT_REBOUND (for the message that asked);
#    what stays queued is ue3's message and the two reports (ue1's and the AS's);
#  - ue1 is re-bound too; ue3 then gets the old ue1's message and reports on it (IMDN): m5s
#    accepts the report (2.04) but the new ue1 never gets it; the new ue1 may reuse a msgId
#    the old one sent (no dedup state handed over);
#  - kill -9 between the two commits (test hook: m5s dies after the registry committed the
#    re-bind of ue2, before the store heard of it): after the restart the store catches up,
#    ue3 gets its RECIPIENT_REBOUND report and the new subscriber of ue2 gets nothing.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
SUPI1=001010000000701
KAUSF1=0101010101010101010101010101010101010101010101010101010101010101
SUPI1B=001010000000711
KAUSF1B=1111111111111111111111111111111111111111111111111111111111111111
SUPI2=001010000000702
KAUSF2=0202020202020202020202020202020202020202020202020202020202020202
SUPI2B=001010000000712
KAUSF2B=1212121212121212121212121212121212121212121212121212121212121212
SUPI3=001010000000703
KAUSF3=0303030303030303030303030303030303030303030303030303030303030303

# coap_raw.py, taught to accept pushed IMDN bodies too (its recv step wants a MSG).
RAW="$M5_TMP/coap_raw_imdn.py"
sed 's/obj.get("msgType") != "MSG"/obj.get("msgType") not in ("MSG", "IMDN")/' \
  "$M5_SRC/tests/interop/coap_raw.py" >"$RAW"
grep -q '"IMDN")' "$RAW" || fail "cannot adapt coap_raw.py to IMDN"

make_pki
start_aanf
use_test_hooks
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
setup_ue ue3 "$SUPI3" "$KAUSF3"

# raw SUPI KAUSF OUT STEPS...: coap_raw.py as that subscriber over TLS 1.3; must succeed.
raw() {
  local supi=$1 kausf=$2 out=$3 akid kaf
  shift 3
  akid=$(akma_derive "$supi" "$kausf" tls13 | kv_field akid)
  kaf=$(akma_derive "$supi" "$kausf" tls13 | kv_field kaf)
  timeout 60 "$PY" "$RAW" --tls --port "$M5S_PORT" --kaf "$kaf" --akid "$akid" --timeout 10 \
    -- "$@" >"$out" 2>&1 || m5s_fail "coap_raw ($supi) failed:$(printf '\n')$(cat "$out")"
}
# msg ID FROM DEST [EXTRA]: a MSG body, store-and-forward.
msg() {
  printf '{"msgType":"MSG","oriAddr":{"addrType":"UE","addr":"%s"},"destAddr":{"addrType":"UE","addr":"%s"},"msgId":"%s","payload":"aGk=","stoAndFwInd":true%s}' \
    "$2" "$3" "$1" "${4:-}"
}
REP=',"delivStReqInd":true'
# bind UE SUPI KAUSF OUT: m5ctl subscriber add (AAnF and binding); must exit 0.
bind() {
  "$M5_BIN/m5ctl" subscriber add --supi "$2" --kausf "$3" --ue-svc-id "$1" --aanf "$AANF_URL" \
    --m5s-admin "$M5S_ADMIN" --pki "$M5_TMP/pki" >"$4" 2>&1 ||
    m5s_fail "m5ctl subscriber add $1 -> $2 exited non-zero: $(cat "$4")"
}
queued() {
  curl -s --max-time 10 "$M5S_ADMIN/admin/v1/stats" >stats.json
  json_get stats.json messagesQueued
}
# config NAME UE SUPI KAUSF: an m5c configuration for that subscriber as UE.
config() {
  printf 'ue-svc-id: %s\nsupi: "%s"\nkausf: "%s"\naf-fqdn: localhost\n' "$2" "$3" "$4" \
    >"$M5_TMP/$1.yaml"
}

# ---- the queue ------------------------------------------------------------------------------
for ue in ue2 ue3; do
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/$ue.yaml" --server "$(m5c_uri dtls)" register \
    >"reg-$ue.out" 2>&1 || m5s_fail "$ue register: $(cat "reg-$ue.out")"
done
raw "$SUPI1" "$KAUSF1" send.out reg:ue1 'expect:2.01|2.04' \
  "json:$(msg rb-1 ue1 ue2 "$REP")" expect:2.04:status=DELY_STORED \
  "json:$(msg rb-2 ue1 ue2)" expect:2.04:status=DELY_STORED \
  "json:$(msg im-1 ue1 ue3 "$REP")" expect:2.04:status=DELY_STORED
as1_client # tests/lib.sh: as1 on m5s, its TOKEN, and nb
nb /msgs-msgdelivery/v1/deliver-as-message -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d '{"oriAddr":{"addrType":"AS","addr":"as1"},"destAddr":{"addrType":"UE","addr":"ue2"},"msgId":"rb-as","payload":"aGk=","stoAndFwInd":true,"delivStReqInd":true}'
[[ $ST == 200 && $(json_get out.json status) == DELY_STORED ]] ||
  m5s_fail "AS -> ue2: $ST $(cat out.json)"
[[ $(queued) == 4 ]] || m5s_fail "want 4 queued deliveries: $(cat stats.json)"

# ---- the same SUPI again changes nothing ----------------------------------------------------
bind ue2 "$SUPI2" "$KAUSF2" same.out
grep -q '^bound ue_svc_id=ue2 supi='"$SUPI2"' failed_deliveries=0$' same.out ||
  m5s_fail "re-provisioning ue2 with its SUPI: $(cat same.out)"
[[ $(queued) == 4 ]] || m5s_fail "a PUT of the same SUPI changed the queue: $(cat stats.json)"
echo "ok: the same SUPI again keeps the queue"

# ---- re-bind ue2 ----------------------------------------------------------------------------
bind ue2 "$SUPI2B" "$KAUSF2B" rebind.out
grep -q '^bound ue_svc_id=ue2 supi='"$SUPI2B"' failed_deliveries=3$' rebind.out ||
  m5s_fail "m5ctl did not report 3 failed deliveries: $(cat rebind.out)"
admin_curl -s --max-time 10 "$M5S_ADMIN/admin/v1/bindings/ue2" >b2.json
[[ $(json_get b2.json supi) == "$SUPI2B" && $(json_get b2.json registered) == false ]] ||
  m5s_fail "binding of ue2: $(cat b2.json)"
# What stays: ue3's message, ue1's report, the AS's report.
[[ $(queued) == 3 ]] || m5s_fail "want 3 queued after the re-bind: $(cat stats.json)"
config ue2new ue2 "$SUPI2B" "$KAUSF2B"
set +e
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue2new.yaml" --server "$(m5c_uri dtls)" listen \
  --count 1 --timeout 4 >new2.out 2>new2.err
rc=$?
set -e
[[ $rc == 4 ]] || m5s_fail "the new ue2: listen exit $rc (4 = nothing came): $(cat new2.out new2.err)"
! grep -q '"msgType"' new2.out || m5s_fail "the new ue2 got the old one's messages: $(cat new2.out)"
raw "$SUPI1" "$KAUSF1" report.out reg:ue1 'expect:2.01|2.04' \
  "recv:msgid=rb-1:from=ue2:to=ue1:msgType=IMDN:delivSt=REPT_DELY_FAILED:failureCause=RECIPIENT_REBOUND" \
  quiet:2
[[ $(grep -c '^RECV ' report.out) == 1 ]] || m5s_fail "ue1's reports: $(cat report.out)"
echo "ok: re-bound ue2 starts clean; ue1 got its RECIPIENT_REBOUND report"

# ---- a report on what the old ue1 sent does not reach the new ue1 ---------------------------
bind ue1 "$SUPI1B" "$KAUSF1B" rebind1.out
grep -q '^bound ue_svc_id=ue1 supi='"$SUPI1B"' failed_deliveries=0$' rebind1.out ||
  m5s_fail "re-binding ue1: $(cat rebind1.out)"
IMDN='{"msgType":"IMDN","oriAddr":{"addrType":"UE","addr":"ue3"},"destAddr":{"addrType":"UE","addr":"ue1"},"msgId":"im-1","delivSt":"REPT_DELY_SUCCESS"}'
raw "$SUPI3" "$KAUSF3" ue3.out reg:ue3 'expect:2.01|2.04' \
  "recv:msgid=im-1:from=ue1:to=ue3" "json:$IMDN" expect:2.04
config ue1new ue1 "$SUPI1B" "$KAUSF1B"
set +e
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue1new.yaml" --server "$(m5c_uri tls)" listen \
  --count 1 --timeout 4 >new1.out 2>new1.err
rc=$?
set -e
[[ $rc == 4 ]] || m5s_fail "the new ue1: listen exit $rc (4 = nothing came): $(cat new1.out new1.err)"
! grep -q '"msgType"' new1.out || m5s_fail "the new ue1 got the old one's report: $(cat new1.out)"
# The new ue1 starts without the old one's dedup window: im-1 is a new message from it (a
# duplicate would get the old answer, DELY_STORED).
raw "$SUPI1B" "$KAUSF1B" reuse.out reg:ue1 'expect:2.01|2.04' \
  "json:$(msg im-1 ue1 nobody)" expect:2.04:status=DELY_FAILED:failureCause=UNKNOWN_RECIPIENT
echo "ok: a report on the old ue1's message is not delivered to the new ue1; no dedup handed over"

# ---- kill -9 between the registry's commit and the store's ---------------------------------
raw "$SUPI3" "$KAUSF3" k.out reg:ue3 'expect:2.01|2.04' \
  "json:$(msg k-1 ue3 ue2 "$REP")" expect:2.04:status=DELY_STORED
touch "$HOOKS/kill-before-store-rebind"
"$M5_BIN/m5ctl" subscriber add --supi "$SUPI2" --kausf "$KAUSF2" --ue-svc-id ue2 \
  --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" --pki "$M5_TMP/pki" >kill.out 2>&1 &&
  m5s_fail "m5ctl succeeded although m5s was to die: $(cat kill.out)"
[[ -e $HOOKS/kill-before-store-rebind.reached ]] || m5s_fail "the kill hook was not reached"
for ((i = 0; i < 100; i++)); do kill -0 "$M5S_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$M5S_PID" 2>/dev/null && m5s_fail "m5s did not die at the hook"
wait "$M5S_PID" 2>/dev/null || true
rm -f "$HOOKS/kill-before-store-rebind"
start_m5s
grep -q 'failed at start-up (RECIPIENT_REBOUND)' "$M5S_LOG" ||
  m5s_fail "the store did not catch up at start-up"
admin_curl -s --max-time 10 "$M5S_ADMIN/admin/v1/bindings/ue2" >b2.json
[[ $(json_get b2.json supi) == "$SUPI2" ]] || m5s_fail "the re-bind was not committed: $(cat b2.json)"
set +e
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri dtls)" listen \
  --count 1 --timeout 4 >k2.out 2>k2.err
rc=$?
set -e
[[ $rc == 4 ]] || m5s_fail "ue2 after the crash: listen exit $rc: $(cat k2.out k2.err)"
raw "$SUPI3" "$KAUSF3" k3.out reg:ue3 'expect:2.01|2.04' \
  "recv:msgid=k-1:from=ue2:to=ue3:msgType=IMDN:delivSt=REPT_DELY_FAILED:failureCause=RECIPIENT_REBOUND"
echo "ok: kill -9 between the two commits: the store catches up at start-up"
stop_m5s
stop_aanf
echo "PASS"
