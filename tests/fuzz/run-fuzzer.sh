#!/usr/bin/env bash
# Builds one libFuzzer harness with clang (ASan+UBSan+fuzzer) and runs it briefly over its
# seed corpus. Usage: run-fuzzer.sh NAME [SECONDS]. The harness tests/fuzz/fuzz_NAME.c names
# the sources it needs on lines "M5_FUZZ_SOURCES: ..." (as many as needed) and pkg-config
# packages on "M5_FUZZ_PKGS: ...". A crash leaves its input in $M5_TMP and fails the test.
set -euo pipefail
name=$1
secs=${2:-${M5_FUZZ_SECONDS:-10}}
src="$M5_SRC/tests/fuzz/fuzz_$name.c"
sources=$(sed -n 's/.*M5_FUZZ_SOURCES: *\([^*]*\).*/\1/p' "$src")
pkgs=$(sed -n 's/.*M5_FUZZ_PKGS: *\([^*]*\).*/\1/p' "$src")
rm -rf "$M5_TMP" && mkdir -p "$M5_TMP/corpus"
cp -r "$M5_SRC/tests/fuzz/corpus/$name/." "$M5_TMP/corpus/"
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I"$M5_SRC/src/lib" -I"$M5_SRC/src")
abs_sources=()
for f in $sources; do abs_sources+=("$M5_SRC/$f"); done
# shellcheck disable=SC2086
clang "${flags[@]}" "$src" "${abs_sources[@]}" \
  $( [[ -n "$pkgs" ]] && pkg-config --cflags --libs $pkgs ) -lpthread -o "$M5_TMP/fuzz_$name"
cd "$M5_TMP"
if ! "./fuzz_$name" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
    -artifact_prefix="$M5_TMP/" -print_final_stats=1 corpus >fuzz.log 2>&1; then
  grep -v -e '^INFO' -e '^#' fuzz.log | head -n 80
  echo "fuzz_$name: crash; reproduce with $M5_TMP/fuzz_$name <artifact above>" >&2
  exit 1
fi
tail -n 6 fuzz.log
