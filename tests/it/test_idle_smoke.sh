#!/usr/bin/env bash
# Smoke run of bench/idle.sh (docs/benchmarks.md, "Idle devices and registration storm"): a few
# idle UEs on m5s over TLS and over DTLS (bench/m5idle, real m5-aanf, m5ctl subscriber import),
# the raw PSK handshake reference (bench/storm) and a few idle TLS-PSK clients on Mosquitto
# (bench/mqidle). It asserts only that the three metric lines come out as plain decimals, that
# no client failed or was lost, and that a second run does not overwrite the first one's
# results file; never a figure (performance is claimed from the bench, not from tests).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

for b in m5idle mqidle storm; do
  [[ -x $M5_BIN/$b ]] || fail "$M5_BIN/$b missing (the test build sets -DM5_BENCH=ON)"
done
command -v mosquitto >/dev/null || fail "mosquitto missing (make test installs it)"
IDLE=$M5_SRC/bench/idle.sh
RES=$M5_TMP/results
rm -rf "$RES"

run() { # N: one run into $RES, its stdout in idle.N.out
  timeout 200 "$IDLE" --idle-clients 4 --parallel 2 --settle 0.2 --build "$M5_BIN/.." \
    --results "$RES" >"idle.$1.out" 2>"idle.$1.err" || fail "bench/idle.sh run $1: $(tail -8 "idle.$1.err")"
}
run 1
D='[0-9]+(\.[0-9]+)?'
grep -Eqx "rss_kib_per_idle_client m5s=-?$D mosquitto=-?$D ratio=-?$D" idle.1.out ||
  fail "no TLS memory line: $(cat idle.1.out)"
grep -Eqx "rss_kib_per_idle_client_dtls m5s=-?$D" idle.1.out || fail "no DTLS memory line: $(cat idle.1.out)"
grep -Eqx "connects_per_s m5s=$D raw_psk=$D ratio=$D" idle.1.out || fail "no storm line: $(cat idle.1.out)"
[[ $(wc -l <idle.1.out) == 3 ]] || fail "more than the three lines on stdout: $(cat idle.1.out)"
f1=$(ls "$RES"/*-idle.txt) || fail "no results file in $RES"
for want in 'system=m5s transport=tls clients=4 registered=4 dead=0 lost=0' \
  'system=m5s transport=dtls clients=4 registered=4 dead=0 lost=0' \
  'system=raw_psk connects=4 done=4 failed=0' \
  'system=mosquitto transport=tls clients=4 connected=4 failed=0'; do
  grep -q "^RESULT $want " "$f1" || fail "results file lacks '$want': $(grep RESULT "$f1")"
done
# the key exchange and suite of the raw reference and of Mosquitto are logged
grep -q '^RESULT system=raw_psk .* suite=TLS_AES_128_GCM_SHA256 group=X25519 ' "$f1" || fail "raw suite: $(grep raw_psk "$f1")"
cp "$f1" first.txt
run 2
[[ $(ls "$RES" | wc -l) == 2 ]] || fail "the second run did not write a second file: $(ls "$RES")"
cmp -s first.txt "$f1" || fail "the second run overwrote $f1"
echo "idle smoke: ok ($(tr '\n' ';' <idle.2.out))"
