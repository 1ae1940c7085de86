#!/usr/bin/env bash
# Smoke run of the fan-out generator (bench/m5fan, docs/benchmarks.md "Group fan-out") so that
# it keeps working, against the real m5-aanf and m5s, on a Messaging Topic (a few members):
#  - `m5fan --print-subscribers` is a file `m5ctl subscriber import` takes;
#  - members 4..7 subscribe and leave; members 0..3 subscribe, stay, and the sender publishes
#    3 messages with stoAndFwInd: each online member gets each once (exit 0, RESULT counts);
#  - the state file carries what a run got: with one claiming that member 5 already had the
#    first message, members 4..7 coming online get the 3 stored messages and m5fan reports
#    member 5's as a duplicate (exit 1); with one claiming that member 1 never got it (its R
#    line removed), members 0..3 online again get nothing and m5fan reports it missing
#    (exit 1, at its timeout).
# Correctness only, never a figure (timings are make bench's).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

[[ -x $M5_BIN/m5fan ]] || fail "$M5_BIN/m5fan missing (the test build sets -DM5_BENCH=ON)"
TOPIC=fan.smoke
make_pki
start_aanf
start_m5s "log: {level: info}"
"$M5_BIN/m5fan" --print-subscribers --members 8 >subs.txt
[[ $(wc -l <subs.txt) == 9 ]] && grep -q ' fan-7$' subs.txt && grep -q ' fan-sender$' subs.txt ||
  fail "print-subscribers: $(cat subs.txt)"
timeout 120 "$M5_BIN/m5ctl" subscriber import subs.txt --aanf "$AANF_URL" --m5s-admin "$M5S_ADMIN" \
  --pki "$M5_TMP/pki" >import.out 2>&1 || fail "import: $(cat import.out)"

# fan RUN_NAME ARGS...: m5fan against m5s; RESULT line in $RES, exit status in FAN_RC.
fan() {
  local name=$1
  shift
  FAN_RC=0
  timeout 120 "$M5_BIN/m5fan" --port "$M5S_PORT" --members 8 --label "$name" --timeout 60 "$@" \
    >"$name.out" 2>"$name.err" || FAN_RC=$?
  RES=$(grep "^RESULT system=$name " "$name.out") || fail "$name: no RESULT (exit $FAN_RC): $(tail -5 "$name.err")"
  echo "$RES"
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$RES"; }
expect() { # NAME=VALUE...
  local kv
  for kv in "$@"; do
    [[ $(field "${kv%%=*}") == "${kv#*=}" ]] || m5s_fail "want ${kv%%=*}=${kv#*=}: $RES; $(tail -5 "$NAME.err")"
  done
}

NAME=sub
fan sub --range 4:8 --topic "$TOPIC" --quiet 0
[[ $FAN_RC == 0 ]] || m5s_fail "sub: exit $FAN_RC: $(cat sub.err)"
expect members=4 registered=4 subscribed=4 received=0

NAME=first
fan first --range 0:4 --topic "$TOPIC" --send 3 --to "topic:$TOPIC" --state st.txt --quiet 1
[[ $FAN_RC == 0 ]] || m5s_fail "first: exit $FAN_RC: $(cat first.err)"
expect members=4 registered=4 sent=3 expected=3 received=12 duplicates=0 missing=0 unexpected=0
[[ $(grep -c '^S ' st.txt) == 3 && $(grep -c '^R ' st.txt) == 12 ]] || fail "state file: $(cat st.txt)"

cp st.txt st-dup.txt
cp st.txt st-miss.txt
MID=$(sed -n 's/^S //p' st.txt | head -n 1)
echo "R 5 $MID" >>st-dup.txt                  # member 5 "already had" the first message
sed -i "/^R 1 $MID\$/d" st-miss.txt          # member 1 "never got" it

NAME=dup
fan dup --range 4:8 --state st-dup.txt --quiet 1
[[ $FAN_RC == 1 ]] || m5s_fail "dup: exit $FAN_RC, want 1 (a duplicate): $RES"
expect members=4 registered=4 expected=3 received=11 duplicates=1 missing=0
grep -q "duplicate: fan-5 got msgId $MID again" dup.err || fail "dup: $(cat dup.err)"

NAME=again
fan again --range 0:4 --state st-miss.txt --quiet 0 --timeout 4
[[ $FAN_RC == 1 ]] || m5s_fail "again: exit $FAN_RC, want 1 (member 1 misses $MID): $RES"
expect members=4 registered=4 received=0 duplicates=0 missing=1
echo "m5fan smoke: ok"
