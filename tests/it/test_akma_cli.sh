#!/usr/bin/env bash
# m5ctl akma derive against the msgin5g-security.md §11.3 chain A vectors (TS 33.535 Annex A),
# and its usage errors: exit code 2 and exactly one stderr line naming the bad argument.
# Env: M5_BIN (directory holding m5ctl), M5_TMP (scratch directory, recreated here).
set -euo pipefail

: "${M5_BIN:?set M5_BIN to the directory holding m5ctl}"
: "${M5_TMP:?set M5_TMP to a scratch directory}"
rm -rf "$M5_TMP"
mkdir -p "$M5_TMP"
trap 'rm -rf "$M5_TMP"' EXIT

M5CTL="$M5_BIN/m5ctl"
KAUSF=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
SUPI=001010123456789
FQDN=msgin5g.example.org
KAKMA=3dd5f8b66d40a12d31b8d4856eb5b2c14f9b013bcfccde61dfbbd9185a7fcb3c
ATID=bd7d28460fa2c761ce7b49d6b56613f2cf8332d9efbedb7c727a3362109eab2c
AKID=0000.vX0oRg-ix2HOe0nWtWYT8s-DMtnvvtt8cnozYhCeqyw@5gc.mnc001.mcc001.3gppnetwork.org
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect_output NAME EXPECTED ARGS...: exit 0, stdout exactly EXPECTED, stderr empty.
expect_output() {
  local name=$1 want=$2 rc=0
  shift 2
  timeout 20 "$M5CTL" akma derive "$@" >"$M5_TMP/out" 2>"$M5_TMP/err" || rc=$?
  [[ $rc -eq 0 ]] || fail "$name: exit $rc, stderr: $(cat "$M5_TMP/err")"
  [[ "$(cat "$M5_TMP/out")" == "$want" ]] || fail "$name: got
$(cat "$M5_TMP/out")
want
$want"
  [[ ! -s "$M5_TMP/err" ]] || fail "$name: unexpected stderr: $(cat "$M5_TMP/err")"
}

# expect_usage ARGNAME ARGS...: exit 2, nothing on stdout, one stderr line mentioning ARGNAME.
expect_usage() {
  local arg=$1 rc=0
  shift
  timeout 20 "$M5CTL" akma derive "$@" >"$M5_TMP/out" 2>"$M5_TMP/err" || rc=$?
  [[ $rc -eq 2 ]] || fail "[$*]: exit $rc, want 2"
  [[ ! -s "$M5_TMP/out" ]] || fail "[$*]: printed on stdout: $(cat "$M5_TMP/out")"
  local lines
  lines=$(wc -l <"$M5_TMP/err")
  [[ $lines -eq 1 ]] || fail "[$*]: $lines stderr lines, want 1: $(cat "$M5_TMP/err")"
  grep -qF -- "$arg" "$M5_TMP/err" || fail "[$*]: stderr does not name $arg: $(cat "$M5_TMP/err")"
}

lines() { printf 'kakma=%s\natid=%s\nakid=%s\nkaf=%s' "$KAKMA" "$ATID" "$1" "$2"; }

# Defaults: --ua tls13 (01 00 00 00 07), --rid 0000, realm from the SUPI with a 2-digit MNC.
expect_output tls13-default \
  "$(lines "$AKID" 9767f04bef5e812e0283e129e131730a493d3852c6b0208a66b20885aea794e7)" \
  --kausf "$KAUSF" --supi "$SUPI" --af-fqdn "$FQDN"
# Options in another order, --opt=value form, TLS 1.2 PSK-AES128-GCM-SHA256 (01 00 01 00 a8).
expect_output tls12-00a8 \
  "$(lines "$AKID" 7aead775f4a531d4f1583f49165c05070575fea0ff3f28d7bf8141fae25f7bbf)" \
  --ua tls12:00a8 --af-fqdn="$FQDN" --supi "$SUPI" --kausf "$KAUSF"
expect_output tls12-d001 \
  "$(lines "$AKID" 4dfb4ac28aaa2a6ea54c0898a2096f0d2fb81016b747d94ebe39c15edd76a7e4)" \
  --kausf "$KAUSF" --supi "$SUPI" --af-fqdn "$FQDN" --ua tls12:D001
expect_output explicit-tls13-rid-mnc3 \
  "$(lines "12.vX0oRg-ix2HOe0nWtWYT8s-DMtnvvtt8cnozYhCeqyw@5gc.mnc010.mcc001.3gppnetwork.org" \
    9767f04bef5e812e0283e129e131730a493d3852c6b0208a66b20885aea794e7)" \
  --kausf "$KAUSF" --supi "$SUPI" --af-fqdn "$FQDN" --ua tls13 --rid 12 --mnc-len 3
expect_output realm \
  "$(lines "0000.vX0oRg-ix2HOe0nWtWYT8s-DMtnvvtt8cnozYhCeqyw@akma.example.net" \
    9767f04bef5e812e0283e129e131730a493d3852c6b0208a66b20885aea794e7)" \
  --kausf "$KAUSF" --supi "$SUPI" --af-fqdn "$FQDN" --realm akma.example.net

OK=(--kausf "$KAUSF" --supi "$SUPI" --af-fqdn "$FQDN")
expect_usage --kausf --kausf "${KAUSF:2}" --supi "$SUPI" --af-fqdn "$FQDN"
grep -qF 'expected 64 hex digits (32 octets), got 62' "$M5_TMP/err" ||
  fail "--kausf length message: $(cat "$M5_TMP/err")"
expect_usage --kausf --kausf "${KAUSF:0:62}zz" --supi "$SUPI" --af-fqdn "$FQDN"
expect_usage --kausf --supi "$SUPI" --af-fqdn "$FQDN"
expect_usage --kausf --supi "$SUPI" --af-fqdn "$FQDN" --kausf
expect_usage --supi --kausf "$KAUSF" --supi "imsi-$SUPI" --af-fqdn "$FQDN"
expect_usage --supi --kausf "$KAUSF" --supi 0010101234567890 --af-fqdn "$FQDN"
expect_usage --supi --kausf "$KAUSF" --af-fqdn "$FQDN"
expect_usage --supi --kausf "$KAUSF" --supi 00101 --af-fqdn "$FQDN" --mnc-len 3
expect_usage --af-fqdn --kausf "$KAUSF" --supi "$SUPI" --af-fqdn "$FQDN."
expect_usage --af-fqdn --kausf "$KAUSF" --supi "$SUPI" --af-fqdn "a_b.example"
expect_usage --af-fqdn --kausf "$KAUSF" --supi "$SUPI"
expect_usage --rid "${OK[@]}" --rid 12345
expect_usage --rid "${OK[@]}" --rid ab
expect_usage --ua "${OK[@]}" --ua tls12:00a
expect_usage --ua "${OK[@]}" --ua tls12:00ag
expect_usage --ua "${OK[@]}" --ua tls11
expect_usage --mnc-len "${OK[@]}" --mnc-len 4
expect_usage --mnc-len "${OK[@]}" --realm akma.example.net --mnc-len 3
expect_usage --realm "${OK[@]}" --realm "bad realm"
expect_usage --bogus "${OK[@]}" --bogus
expect_usage stray "${OK[@]}" stray

if ((failures)); then
  echo "test_akma_cli: $failures failure(s)" >&2
  exit 1
fi
echo "test_akma_cli: ok"
