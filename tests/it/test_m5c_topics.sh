#!/usr/bin/env bash
# Integration: m5c subscribe / unsubscribe (Messaging Topics, TS 23.554 cl. 8.8.1; docs/client.md,
# docs/protocol.md §4) against the real m5-aanf and m5s, over TLS and DTLS. Until the server
# side of topics lands, m5s answers a well-formed TOPICSUB / TOPICUNSUB with 4.00 "not supported
# by this server yet": m5c reports it as a refusal (exit 1, the code and the server's
# diagnostic on stderr, nothing on stdout). The diagnostic naming the msgType (not msgTopics)
# shows that m5s parsed m5c's body with the shared codec. The session is usable afterwards: the
# same UE registers again (exit 0).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI1=001010000000301
KAUSF1=c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0

make_pki
start_aanf
start_m5s
setup_ue ue1 "$SUPI1" "$KAUSF1"

# topics_refused TR CMD ARGS...: exit 1, "4.00" and the not-supported diagnostic on stderr.
topics_refused() {
  local tr=$1 cmd=$2 type rc=0
  shift 2
  type=$([[ $cmd == subscribe ]] && echo TOPICSUB || echo TOPICUNSUB)
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri "$tr")" \
    "$cmd" "$@" >out.txt 2>err.txt || rc=$?
  [[ $rc -eq 1 ]] || m5s_fail "m5c $cmd $* ($tr): exit $rc, want 1: $(cat err.txt)"
  grep -qF "4.00" err.txt || m5s_fail "m5c $cmd ($tr): no 4.00 on stderr: $(cat err.txt)"
  grep -qF "msgType $type: not supported by this server yet" err.txt ||
    m5s_fail "m5c $cmd ($tr): the server's diagnostic is missing: $(cat err.txt)"
  [[ ! -s out.txt ]] || m5s_fail "m5c $cmd ($tr): unexpected stdout: $(cat out.txt)"
}

for tr in tls dtls; do
  topics_refused "$tr" subscribe meters.east alarm:fire_1
  topics_refused "$tr" subscribe meters.east --expire 3600
  topics_refused "$tr" unsubscribe meters.east
done

rc=0
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" register \
  >out.txt 2>err.txt || rc=$?
[[ $rc -eq 0 ]] || m5s_fail "register after the refused topic requests: exit $rc: $(cat err.txt)"
stop_m5s
echo "PASS test_m5c_topics"
