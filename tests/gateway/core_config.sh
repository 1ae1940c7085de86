#!/usr/bin/env bash
# m5gw's command line and configuration: --help lists every key (the core's and the built
# adapters'), and every bad configuration stops it at start with exit 1 and a message naming
# the key (and the file's line where the loader knows it): no file, no gw_id, a bad gw_id, an
# unknown kind, another kind's key, a URL that is not https, a management port off loopback,
# a retry window upside down, a listener certificate without serverAuth or without the
# gateway's SAN URI, a port in use, a spool file another m5gw holds, a certificate that is not
# this gateway's (an AS's, another gateway's); SIGINT stops it cleanly.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/core_lib.bash"

gw_pki

"$M5_BIN/m5gw" --help >help.txt
for k in gw_id kind m5s.url m5s.name tls.cert tls.key tls.ca msgg.host msgg.port msgg.cert \
  msgg.key msgg.max_body msgg.max_inflight mgmt.host mgmt.port spool.path spool.max_msgs \
  spool.max_bytes uplink.window uplink.timeout_ms uplink.retry_min_ms uplink.retry_max_ms \
  uplink.max_payload log.level loop.log loop.register loop.deregister loop.echo; do
  grep -q "^  $k (" help.txt || fail "--help does not list $k"
done
rc=0
"$M5_BIN/m5gw" 2>err.txt || rc=$?
[[ $rc == 2 ]] && grep -q 'config FILE is required' err.txt || fail "no --config: rc $rc $(cat err.txt)"

# bad CONFIG_LINE... EXPECTED_REGEX: m5gw refuses to start (exit 1) saying EXPECTED_REGEX
bad() {
  local want=${*: -1} rc=0
  write_gw_config bad.yaml "${@:1:$#-1}"
  timeout 20 "$M5_BIN/m5gw" --config bad.yaml >out.txt 2>err.txt || rc=$?
  [[ $rc == 1 ]] || fail "exit $rc, want 1, for: ${*:1:$#-1} ($(cat err.txt))"
  grep -Eq -- "$want" err.txt || fail "want /$want/ for: ${*:1:$#-1}; got: $(cat err.txt)"
}
bad "gw_id: ''" 'bad.yaml: gw_id: required'
bad "gw_id: 'gw 1'" 'gw_id: expected 1 to 64 of the characters'
bad "kind: ''" "kind: required: one of [a-z, ]*loop"
bad "kind: fax" "kind: 'fax' is not a kind this m5gw was built with"
bad "mqtt: {host: 127.0.0.1}" "bad.yaml:[0-9]+: unknown key 'mqtt(\.host)?'"
bad "m5s: {url: 'http://localhost:8443'}" 'm5s.url: expected https://host'
bad "mgmt: {host: 0.0.0.0, port: 9999}" 'mgmt.host: .0.0.0.0. is not a loopback address'
bad "uplink: {retry_min_ms: 5000, retry_max_ms: 1000}" 'uplink.retry_min_ms: 5000 is above'
bad "msgg: {host: 127.0.0.1, port: 23456, cert: $PKI/gw-gw1.crt, key: $PKI/gw-gw1.key}" \
  'msgg.cert: .*gw-gw1.crt has no extendedKeyUsage serverAuth'
# a listener certificate without the gateway's SAN URI: m5s would refuse every delivery
make_cert nogw "DNS:localhost,IP:127.0.0.1" serverAuth
bad "msgg: {host: 127.0.0.1, port: 23456, cert: $PKI/nogw.crt, key: $PKI/nogw.key}" \
  'msgg.cert: .*nogw.crt is not gateway gw1.s MSGG listener certificate \(no SAN URI urn:msgin5g:gw:gw1'
bad "tls: {cert: $PKI/as1.crt, key: $PKI/as1.key, ca: $PKI/ca.crt}" \
  'tls.cert: .*as1.crt is not gateway gw1.s certificate \(no SAN URI urn:msgin5g:gw:gw1'
bad "gw_id: gw2" 'tls.cert: .*gw1.crt is not gateway gw2.s certificate'
bad "spool: {max_msgs: 0}" 'spool.max_msgs: expected an integer in 1..1000000'

# a port in use: named, exit 1; a spool in use likewise
start_gw
first_mgmt=$GW_MGMT
bad "msgg: {host: 127.0.0.1, port: $GW_MSGG, cert: $PKI/msgg-gw1.crt, key: $PKI/msgg-gw1.key}" \
  'msgg.host/msgg.port: 127.0.0.1:[0-9]+/tcp is already in use'
# a second m5gw on the same spool file: refused, the first one untouched
bad "spool: {path: $M5_TMP/gw/spool.db}" "spool .*/gw/spool.db: in use by another process"
GW_MGMT=$first_mgmt
gw_health && grep -q '"status":"ok"' "$M5_TMP/health.json" || fail "the first m5gw suffered"
# SIGINT (Ctrl-C) stops it like SIGTERM: exit 0 within 5 s
kill -INT "$GW_PID"
wait_pid_rc "$GW_PID" 5
[[ $WAIT_RC == 0 ]] || fail "m5gw after SIGINT: exit $WAIT_RC, want 0 within 5 s"
grep -q 'SIGINT: committing the spool' "$GW_LOG" || fail "SIGINT not logged: $(tail -3 "$GW_LOG")"
echo "PASS"
