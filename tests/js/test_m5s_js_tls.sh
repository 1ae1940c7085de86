#!/usr/bin/env bash
# m5s to NATS over TLS with a client certificate and a user/password (issue 13, docs/m5s.md
# store.js.tls_*, store.js.user, store.js.password_file; docs/scale-out.md "Across machines"):
# one nats-server whose client port requires TLS with a client certificate (`verify: true`,
# certificates of the test PKI) and a user with a password.
#  - m5s without TLS, with TLS but without a client certificate, and with the wrong password
#    does not start (the registry's connection is the first one: it is refused), and no log
#    line holds the password;
#  - with everything m5s starts (registry and store connected as that user over TLS: the
#    server's /connz), accepts a message from ue1 for ue2, offline, and delivers it when ue2
#    comes; /metrics says the store is connected; the password is in no log line.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/nats_lib.bash"

SUPI1=001010000000951
KAUSF1=5151515151515151515151515151515151515151515151515151515151515151
SUPI2=001010000000952
KAUSF2=5252525252525252525252525252525252525252525252525252525252525252
PKI=$M5_TMP/pki

make_pki
make_cert nats-server "IP:127.0.0.1,DNS:localhost" serverAuth
make_cert nats-client "DNS:m5s-a" clientAuth
PASSWORD="pw-$RANDOM$RANDOM$RANDOM"
printf '%s\n' "$PASSWORD" >"$M5_TMP/nats.pw"
printf 'not-%s\n' "$PASSWORD" >"$M5_TMP/wrong.pw"
chmod 600 "$M5_TMP/nats.pw" "$M5_TMP/wrong.pw"
NATS_EXTRA_CONF="tls {
  cert_file: \"$PKI/nats-server.crt\"
  key_file: \"$PKI/nats-server.key\"
  ca_file: \"$PKI/ca.crt\"
  verify: true
}
authorization {
  users: [ { user: m5s, password: \"$PASSWORD\" } ]
}"
start_nats_cluster 1
start_aanf

JS="servers: [${NATS_URLS}], prefix: tls, timeout_ms: 2000"
TLS="tls_ca: $PKI/ca.crt, tls_cert: $PKI/nats-client.crt, tls_key: $PKI/nats-client.key"
AUTH="user: m5s, password_file: $M5_TMP/nats.pw"

# refused NAME JS_KEYS WHY: m5s with store.js {JS_KEYS} exits non-zero without becoming healthy
# and its log says WHY; the password is in no log line.
refused() {
  local log=$M5_TMP/m5s-$1.log rc=0
  write_m5s_config "$M5_TMP/m5s-$1.yaml" "store: {backend: jetstream, js: {$2}}" "node: {name: a}"
  timeout 90 "$M5_BIN/m5s" --config "$M5_TMP/m5s-$1.yaml" >"$log" 2>&1 || rc=$?
  ((rc != 0 && rc != 124)) || { tail -n 20 "$log" >&2; fail "m5s $1: exit $rc, want a refusal"; }
  grep -q -- "$3" "$log" || { tail -n 20 "$log" >&2; fail "m5s $1: the log does not say '$3'"; }
  ! grep -qF -- "$PASSWORD" "$log" || fail "m5s $1: the password is in its log"
  echo "refused ($1): $(grep -m1 -- "$3" "$log" | cut -c1-200)"
}
refused plain "$JS, $AUTH" "connect to the NATS servers"
refused no-cert "$JS, tls_ca: $PKI/ca.crt, $AUTH" "connect to the NATS servers"
refused wrong-pw "$JS, $TLS, user: m5s, password_file: $M5_TMP/wrong.pw" "connect to the NATS servers"

echo "=== TLS with a client certificate and the right password"
start_m5s "store: {backend: jetstream, js: {$JS, $TLS, $AUTH}}" "node: {name: a}"
python3 - "$(curl -s "http://127.0.0.1:${NATS_MON[1]}/connz?auth=true")" <<'PY' || m5s_fail "/connz: $(curl -s "http://127.0.0.1:${NATS_MON[1]}/connz?auth=true")"
import json, sys
conns = json.loads(sys.argv[1]).get("connections") or []
assert len(conns) >= 2, "want the registry's and the store's connections: %d" % len(conns)
for c in conns:
    assert c.get("authorized_user") == "m5s", c
    assert c.get("tls_version"), c
print("connections: %d, each TLS %s as m5s" % (len(conns), conns[0]["tls_version"]))
PY
setup_ue ue1 "$SUPI1" "$KAUSF1"
setup_ue ue2 "$SUPI2" "$KAUSF2"
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" send \
  --to ue:ue2 --msg-id tls-1 --payload "stored in NATS over TLS" --store-forward >send.out 2>&1 ||
  m5s_fail "ue1's send: $(cat send.out)"
grep -q '"status":"DELY_STORED"' send.out || m5s_fail "ue1's send: want DELY_STORED: $(cat send.out)"
set +e
timeout 60 "$M5_BIN/m5c" --config "$M5_TMP/ue2.yaml" --server "$(m5c_uri tls)" listen \
  --count 1 --timeout 30 >listen.out 2>listen.err
rc=$?
set -e
[[ $rc == 0 ]] || m5s_fail "ue2's listen: exit $rc: $(cat listen.err)"
[[ $(listen_ids listen.out) == tls-1 ]] || m5s_fail "ue2 got: $(cat listen.out)"
curl -s --max-time 10 "$M5S_ADMIN/metrics" | grep -q '^msgin5g_store_js_connected 1' ||
  m5s_fail "msgin5g_store_js_connected is not 1"
stop_m5s
! grep -qF -- "$PASSWORD" "$M5S_LOG" || fail "the password is in m5s's log"
echo ok
