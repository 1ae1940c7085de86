#!/usr/bin/env bash
# Integration: m5c subscribe / unsubscribe (Messaging Topics, TS 23.554 cl. 8.8.1; docs/client.md,
# docs/protocol.md §4) against the real m5-aanf and m5s, over TLS and DTLS: m5s answers 2.04
# with a body of the request's msgType (msgTopics, and for TOPICSUB the expiry it set, capped
# at topics.max_expiry_s), which m5c prints as one JSON line (exit 0). What subscriptions do
# is test_m5s_topics.sh's. The session is usable afterwards: the same UE registers again.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SUPI1=001010000000301
KAUSF1=c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0

make_pki
start_aanf
start_m5s "topics: {max_expiry_s: 3600}"
setup_ue ue1 "$SUPI1" "$KAUSF1"

# topics_ok TR CMD ARGS... -- REGEX: exit 0, one JSON line on stdout matching REGEX.
topics_ok() {
  local tr=$1 cmd=$2 rc=0 args=()
  shift 2
  while [[ $1 != -- ]]; do args+=("$1"); shift; done
  timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri "$tr")" \
    "$cmd" "${args[@]}" >out.txt 2>err.txt || rc=$?
  [[ $rc -eq 0 ]] || m5s_fail "m5c $cmd ${args[*]} ($tr): exit $rc: $(cat err.txt)"
  grep -Eq "$2" out.txt || m5s_fail "m5c $cmd ($tr): answer $(cat out.txt), want $2"
}

CAP=$(date -u -d '+1 hour' +%Y-%m-%d) # topics.max_expiry_s 3600 below caps --expire 86400
for tr in tls dtls; do
  topics_ok "$tr" subscribe meters.east alarm:fire_1 -- \
    '^\{"msgType":"TOPICSUB","msgTopics":\["meters.east","alarm:fire_1"\],"expiry":"20[0-9-]+T[0-9:]+Z"\}$'
  topics_ok "$tr" subscribe meters.east --expire 86400 -- "\"expiry\":\"$CAP"
  topics_ok "$tr" unsubscribe meters.east -- '^\{"msgType":"TOPICUNSUB","msgTopics":\["meters.east"\]\}$'
done

rc=0
timeout 30 "$M5_BIN/m5c" --config "$M5_TMP/ue1.yaml" --server "$(m5c_uri tls)" register \
  >out.txt 2>err.txt || rc=$?
[[ $rc -eq 0 ]] || m5s_fail "register after the topic requests: exit $rc: $(cat err.txt)"
stop_m5s
echo "PASS test_m5c_topics"
