#!/usr/bin/env bash
# m5c usage errors (docs/client.md): each bad argument exits 2 with exactly one line on stderr
# naming it, before any network activity; --help works; an IP-literal server without --af-fqdn
# is a usage error naming --af-fqdn. No daemon is started.
set -euo pipefail
source "$M5_SRC/tests/lib.sh"

M5C="$M5_BIN/m5c"
K=$(printf '%064d' 1)
CRED=(--kausf "$K" --supi 001010000000001)
OK=(--server coaps://localhost:1 --ue-svc-id ue1 "${CRED[@]}")

# usage WANT_SUBSTRING ARGS...: exit 2, one stderr line containing WANT, nothing on stdout.
usage() {
  local want=$1 rc=0
  shift
  timeout 10 "$M5C" "$@" >out.txt 2>err.txt || rc=$?
  [[ $rc -eq 2 ]] || fail "m5c $*: exit $rc, want 2 ($(cat err.txt))"
  [[ $(wc -l <err.txt) -eq 1 ]] || fail "m5c $*: want one line on stderr, got: $(cat err.txt)"
  grep -qF -- "$want" err.txt || fail "m5c $*: stderr does not name '$want': $(cat err.txt)"
  [[ ! -s out.txt ]] || fail "m5c $*: unexpected stdout: $(cat out.txt)"
}

timeout 10 "$M5C" --help >help.txt || fail "m5c --help failed"
grep -q "usage: m5c" help.txt || fail "--help prints no usage"
for w in register deregister send listen subscribe unsubscribe group: bc: topic: --af-fqdn \
  --kakma --count --report --store-forward --expire --priority; do
  grep -qF -- "$w" help.txt || fail "--help does not mention $w"
done
timeout 10 "$M5C" send --help >/dev/null || fail "m5c send --help failed"

usage "COMMAND" "${OK[@]}"
usage "frobnicate" frobnicate "${OK[@]}"
usage "extra" register extra "${OK[@]}"
usage "--bogus" register --bogus "${OK[@]}"
usage "--server" register "${OK[@]}" --server
usage "--server" register --ue-svc-id ue1 "${CRED[@]}"
usage "--server" register --server http://localhost --ue-svc-id ue1 "${CRED[@]}"
usage "--server" register --server coaps://localhost:99999 --ue-svc-id ue1 "${CRED[@]}"
usage "--server" register --server coaps://localhost/path --ue-svc-id ue1 "${CRED[@]}"
usage "--transport" register "${OK[@]}" --transport quic
usage "--af-fqdn" register --server coaps://127.0.0.1 --ue-svc-id ue1 "${CRED[@]}"
usage "--af-fqdn" register --server 'coaps+tcp://[::1]:5684' --ue-svc-id ue1 "${CRED[@]}"
usage "--af-fqdn" register "${OK[@]}" --af-fqdn 'bad_name.'
usage "--ue-svc-id" register --server coaps://localhost "${CRED[@]}"
usage "--ue-svc-id" register --server coaps://localhost --ue-svc-id 'a b' "${CRED[@]}"
usage "--kausf" register --server coaps://localhost --ue-svc-id ue1
usage "--kausf" register "${OK[@]}" --kausf 1234
usage "--supi" register --server coaps://localhost --ue-svc-id ue1 --kausf "$K"
usage "--supi" register --server coaps://localhost --ue-svc-id ue1 --kausf "$K" --supi imsi-1
usage "--rid" register "${OK[@]}" --rid 12345
usage "--realm" register "${OK[@]}" --realm 'bad realm'
usage "--mnc-len" register "${OK[@]}" --mnc-len 4
usage "--mnc-len" register "${OK[@]}" --mnc-len 3 --realm example.org
usage "--kakma" register "${OK[@]}" --kakma "$K" --akid a@b
usage "--akid" register --server coaps://localhost --ue-svc-id ue1 --kakma "$K"
usage "--akid" register "${OK[@]}" --akid 0000.x@realm
usage "--timeout" register "${OK[@]}" --timeout 0
usage "--timeout" register "${OK[@]}" --timeout soon
usage "--to" send "${OK[@]}" --payload hi
usage "--to" send "${OK[@]}" --to ue2 --payload hi
usage "--payload" send "${OK[@]}" --to ue:ue2
usage "--msg-id" send "${OK[@]}" --to ue:ue2 --payload hi --msg-id 'a/b'
usage "--to" register "${OK[@]}" --to ue:ue2
usage "--count" send "${OK[@]}" --to ue:ue2 --payload hi --count 1
usage "--count" listen "${OK[@]}" --count 0
usage "--config" register "${OK[@]}" --config "$M5_TMP/missing.yaml"

# send's delivery options (issue 4): each bad value, and each one given to another command.
SEND=(send "${OK[@]}" --to ue:ue2 --payload hi)
usage "--priority" "${SEND[@]}" --priority urgent
usage "--priority" "${SEND[@]}" --priority HIGH
usage "--priority" "${SEND[@]}" --priority
usage "--expire" "${SEND[@]}" --expire 0
usage "--expire" "${SEND[@]}" --expire -5
usage "--expire" "${SEND[@]}" --expire 1.5
usage "--expire" "${SEND[@]}" --expire soon
usage "--expire" "${SEND[@]}" --expire 999999999999
usage "--expire" "${SEND[@]}" --expire
usage "--report=yes" "${SEND[@]}" --report=yes
usage "--store-forward=1" "${SEND[@]}" --store-forward=1
usage "--report" register "${OK[@]}" --report
usage "--store-forward" listen "${OK[@]}" --store-forward
usage "--expire" deregister "${OK[@]}" --expire 60
usage "--priority" listen "${OK[@]}" --priority high

# Messaging Topics (issue 10): subscribe / unsubscribe TOPIC...: the names are checked before
# any network activity (1-128 characters of A-Z a-z 0-9 . _ : -, at most 32, no repeats), and
# send's group:, bc: and topic: addresses follow the same rule.
usage "TOPIC: missing" subscribe "${OK[@]}"
usage "TOPIC: missing" unsubscribe "${OK[@]}"
usage "'a b'" subscribe "${OK[@]}" 'a b'
usage "'a/b'" unsubscribe "${OK[@]}" ok 'a/b'
usage "'caf"$'\xc3\xa9'"'" subscribe "${OK[@]}" "caf"$'\xc3\xa9'
usage "TOPIC: expected" subscribe "${OK[@]}" ''
LONG=$(printf 'n%.0s' {1..129})
usage "TOPIC: expected" subscribe "${OK[@]}" "$LONG"
usage "'t1' given twice" subscribe "${OK[@]}" t1 t2 t1
mapfile -t MANY < <(seq -f 't%g' 1 33)
usage "33 topics, at most 32" subscribe "${OK[@]}" "${MANY[@]}"
usage "--expire" subscribe "${OK[@]}" t1 --expire 0
usage "--expire" unsubscribe "${OK[@]}" t1 --expire 60
usage "--payload" subscribe "${OK[@]}" t1 --payload hi
usage "--to" unsubscribe "${OK[@]}" t1 --to ue:ue2
usage "--count" subscribe "${OK[@]}" t1 --count 1
usage "t1" listen "${OK[@]}" t1
usage "--to" send "${OK[@]}" --to 'group:a@b' --payload hi
usage "--to" send "${OK[@]}" --to 'bc:area/1' --payload hi
usage "--to" send "${OK[@]}" --to "topic:$LONG" --payload hi

# The config file: its keys are the long option names; a bad value names file and key.
printf 'server: coaps://127.0.0.1\nue-svc-id: ue1\nsupi: "001010000000001"\nkausf: "%s"\n' "$K" >ip.yaml
usage "--af-fqdn" register --config ip.yaml
printf 'server: coaps://localhost\nue-svc-id: ue1\nsupi: "12"\nkausf: "%s"\n' "$K" >bad.yaml
usage "supi" register --config bad.yaml
printf 'servr: coaps://localhost\n' >typo.yaml
usage "servr" register --config typo.yaml

# Options after the command work as well as before it: with everything valid, the only
# failure left is the unreachable server (exit 3), not a usage error.
rc=0
timeout 20 "$M5C" register "${OK[@]}" --timeout 2 >/dev/null 2>err.txt || rc=$?
[[ $rc -eq 3 ]] || fail "unreachable server: exit $rc, want 3 ($(cat err.txt))"
rc=0
timeout 20 "$M5C" "${OK[@]}" --timeout 2 register >/dev/null 2>err.txt || rc=$?
[[ $rc -eq 3 ]] || fail "options before the command: exit $rc, want 3 ($(cat err.txt))"
# All of send's options valid (before and after the command): only the unreachable server
# is left (exit 3).
rc=0
timeout 20 "$M5C" --report "${SEND[@]}" --store-forward --expire 60 --priority low \
  --msg-id m-1 --timeout 2 >/dev/null 2>err.txt || rc=$?
[[ $rc -eq 3 ]] || fail "send with every delivery option: exit $rc, want 3 ($(cat err.txt))"
# Valid topic commands and named addresses get as far as the (unreachable) server: exit 3. A
# topic that starts with '-' follows "--"; a 128-character name is fine.
NAME128=$(printf 'n%.0s' {1..128})
for args in "subscribe t1 a.b:c_d-E9 $NAME128 --expire 60" "unsubscribe t1" \
  "subscribe -- -t" "send --to group:fleet.7 --payload hi" "send --to bc:area:north --payload hi" \
  "send --to topic:$NAME128 --payload hi"; do
  rc=0
  # shellcheck disable=SC2086
  timeout 20 "$M5C" "${OK[@]}" --timeout 2 $args >/dev/null 2>err.txt || rc=$?
  [[ $rc -eq 3 ]] || fail "m5c $args: exit $rc, want 3 ($(cat err.txt))"
done
echo "PASS test_m5c_usage"
