#!/usr/bin/env bash
# The SMS gateway end to end while m5s is away, and killed with -9, through the real m5s,
# m5-aanf, m5gw of kind sms, m5c (ue1) and the npm `smpp` SMSC (e2e_sms_smsc.mjs), which,
# like an SMSC does, delivers again on a new bind every deliver_sm left unanswered:
#  - m5s stopped: a device message is spooled and its deliver_sm_resp held (docs/
#    gateways-sms.md, "Outcomes"); the SMSC gives up on the connection and delivers it again on
#    the next bind, the gateway merges the copy with the one waiting; m5s back: both copies
#    answered ESME_ROK, ue1 gets the message once;
#  - m5s stopped again, three device messages (two of them the same text) spooled, m5gw killed
#    with -9, m5s and m5gw restarted on the same spool; the SMSC delivers the three again on
#    the new bind: each answered ESME_ROK once m5s has it, and ue1 gets each message exactly
#    once (the same text twice: twice), not the spooled copy and the redelivered one.
# needs: M5_TEST_HOOKS
set -euo pipefail
source "$M5_SRC/tests/lib.sh"
source "$M5_SRC/tests/gateway/e2e_sms_lib.bash"

e2e_sms_setup
gw_uplink() { # the /healthz uplink counter NAME
  gw_health
  node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    process.stdout.write(String(o.uplink[process.argv[2]]))' "$M5_TMP/health.json" "$1"
}
wait_retried() { # N: until the gateway's uplink retried N times (m5s unreachable)
  for ((i = 0; i < 200; i++)); do
    (($(gw_uplink retried 2>/dev/null || echo 0) >= $1)) && return 0
    sleep 0.1
  done
  fail "the gateway did not retry m5s: $(cat "$M5_TMP/health.json"; gw_tail)"
}

# ---- m5s unreachable: deliver_sm_resp held; a redelivery on a new bind merged -----------------
stop_m5s
smsc mo h1 "$SM1" 2000 0 "$(hexof 'held while m5s is away')"
wait_spool 1 20 || fail "not spooled: $(cat "$M5_TMP/health.json"; gw_tail)"
wait_retried 2
smsc_sync
[[ $(smsc_count '^MORESP h1') == 0 ]] || fail "deliver_sm answered while m5s is away: $(cat "$SMSC_OUT")"
# the SMSC gives up on the connection; after the next bind it delivers the message again
smsc drop
smsc_wait '^BIND 2 gw1$' 20 "the gateway binding again"
smsc redeliver
wait_file_line "$GW_LOG" 'redelivered by the SMSC: waiting for m5s' 20 "$GW_PID" ||
  fail "the redelivery was not merged with the message waiting: $(gw_tail)"
smsc_sync
[[ $(smsc_count '^MORESP h1') == 0 ]] || fail "deliver_sm answered while m5s is away: $(cat "$SMSC_OUT")"
restart_m5s
smsc_wait '^MORESP h1\+ 0$' 20 "the redelivered copy answered once m5s has it"
wait_spool 0 10 || fail "the spool is not empty: $(cat "$M5_TMP/health.json")"
echo "ok: m5s away: deliver_sm_resp held, a redelivery merged, answered ESME_ROK once m5s has it"

# ---- m5s back while the SMSC is away: the answer has no connection; the redelivery after the
# next bind is answered at once, not sent to m5s again ----------------------------------------
stop_m5s
smsc mo a1 "$SM1" 2000 0 "$(hexof 'accepted while unbound')"
wait_spool 1 20 || fail "not spooled: $(cat "$M5_TMP/health.json"; gw_tail)"
smsc bind refuse
smsc drop
smsc_wait '^BIND 4 gw1$' 20 "the gateway trying to bind again" # refused
restart_m5s
wait_spool 0 20 || fail "m5s did not take the message: $(cat "$M5_TMP/health.json"; gw_tail)"
n=$(grep -c 'bound to SMSC' "$GW_LOG")
smsc bind ok
for ((i = 0; i < 200; i++)); do
  (($(grep -c 'bound to SMSC' "$GW_LOG") > n)) && break
  sleep 0.1
done
(($(grep -c 'bound to SMSC' "$GW_LOG") > n)) || fail "the gateway did not bind again: $(gw_tail)"
smsc redeliver
smsc_wait '^MORESP a1\+ 0$' 20 "the redelivered copy answered ESME_ROK"
echo "ok: m5s took the message while the SMSC was away: its redelivery answered at once"

# ---- m5gw killed with -9 while device messages wait in its spool ----------------------------------
stop_m5s
smsc mo k1 "$SM1" 2000 0 "$(hexof 'reading 1')"
smsc mo k2 "$SM1" 2000 0 "$(hexof 'reading 2')"
smsc mo k3 "$SM1" 2000 0 "$(hexof 'reading 2')"
wait_spool 3 20 || fail "not spooled: $(cat "$M5_TMP/health.json"; gw_tail)"
kill -KILL "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
n=$(smsc_count '^BIND ')
smsc_wait "^CLOSE $n\$" 10 "the SMSC seeing the gateway gone"
[[ $(smsc_count '^MORESP k') == 0 ]] || fail "deliver_sm answered while m5s is away: $(cat "$SMSC_OUT")"
restart_m5s
gw_sms_restart
smsc_wait "^BIND $((n + 1)) gw1\$" 20 "the restarted gateway binding"
smsc redeliver
for tag in k1+ k2+ k3+; do
  smsc_wait "^MORESP ${tag/+/\\+} 0$" 30 "the redelivered $tag answered ESME_ROK"
done
wait_spool 0 20 || fail "the spool is not empty: $(cat "$M5_TMP/health.json")"
grep -q 'spool: 3 messages and reports from before the restart' "$GW_LOG" ||
  fail "the restarted gateway did not find its spool: $(gw_tail)"
echo "ok: m5gw killed -9 with 3 messages spooled, restarted: the redeliveries answered ESME_ROK"

# What m5s took from the gateway (every copy is answered only once m5s has it, so all of it
# is there now): one message per device message, whatever the copies.
node -e '
  const ids = new Map();
  for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
    const m = / MSG (\S+) from gateway gw1 to UE:ue1/.exec(l);
    if (m) ids.set(m[1], true);
  }
  console.log(ids.size);' "$M5S_LOG" >m5s-ids.txt
[[ $(cat m5s-ids.txt) == 5 ]] || m5s_fail "m5s took $(cat m5s-ids.txt) messages from the gateway, want 5"
m5c_listen_bg ue1 tls listen.out 5 20
wait_pid_rc "$M5C_LISTEN_PID" 20
[[ $WAIT_RC == 0 ]] || m5s_fail "ue1 did not get the 4 messages: $(cat listen.out)"
jcheck listen.out "L.length === 5 && L.every((m) => m.msgType === 'MSG' && m.oriAddr.addr === 'sm1') &&
  L.map((m) => m.payloadText).sort().join('|') ===
    'accepted while unbound|held while m5s is away|reading 1|reading 2|reading 2' &&
  new Set(L.map((m) => m.msgId)).size === 5" "each device message once at ue1"
echo "ok: ue1 got each device message exactly once"

stop_daemon "$GW_PID" m5gw || fail "m5gw did not stop cleanly"
echo "PASS"
