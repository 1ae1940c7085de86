#!/usr/bin/env bash
# The repository stands alone (issue 9 point 1; docs/testing.md): a clone with nothing beside it
# builds, runs and passes its tests. Fails when
#  1. a tracked file other than docs/decisions.md (which keeps the history) names the team's
#     design folder beside the repository (the pattern below is written with escaped dots so
#     that this file does not match itself);
#  2. a path the tests read through $M5_SRC is missing, or leads out of the repository;
#  3. an OpenAPI file a test validates against is missing from spec/openapi/, or tests/lib.sh
#     looks for them anywhere else;
#  4. a script the tests, `make run` or `make bench` run names an absolute path of the
#     developers' machines.
# With a git checkout the tracked files are searched (git grep); without one (an unpacked
# tarball), every file under the tree except build/, var/, node_modules/ and .git/.
source "$(dirname "$0")/../lib.sh"

SRC=$(cd "$M5_SRC" && pwd -P)
OUTSIDE='\.\./shared'

# search PATTERN [PATHSPEC...]: "file:line:text" for each match in the repository's files,
# minus docs/decisions.md; exit status 0 if anything matched.
search() {
  local pat=$1
  shift
  local top
  top=$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null || true)
  if [[ -n $top && $(cd "$top" && pwd -P) == "$SRC" ]]; then
    git -C "$SRC" grep -n -I -E -e "$pat" -- "${@:-.}" ':!docs/decisions.md'
  else
    (cd "$SRC" && grep -rn -I -E --exclude-dir=build --exclude-dir=var \
      --exclude-dir=node_modules --exclude-dir=.git -e "$pat" -- "${@:-.}" 2>/dev/null) |
      sed 's|^\./||' | grep -v '^docs/decisions\.md:'
  fi
}

# 1. Nothing points outside the repository.
if hits=$(search "$OUTSIDE"); then
  printf '%s\n' "$hits" >&2
  fail "these files point outside the repository (only docs/decisions.md may, as history)"
fi

# 2. Every literal path the tests read through $M5_SRC exists inside the repository (a path
#    built from a variable, such as tests/fuzz/fuzz_$name.c, is left to the test that builds it).
n_paths=0
while IFS= read -r rel; do
  [[ -z $rel ]] && continue
  real=$(realpath -m "$SRC/$rel")
  [[ $real == "$SRC"/* ]] || fail "a test reads \$M5_SRC/$rel, which is outside the repository"
  [[ -e $real ]] || fail "a test reads \$M5_SRC/$rel, which is not in the repository"
  n_paths=$((n_paths + 1))
done < <(grep -rhoE '\$\{?M5_SRC\}?/[A-Za-z0-9_./-]+[$]?' "$SRC/tests" --include='*.sh' \
  --include='*.py' --include='*.mjs' --include='*.c' --include='CMakeLists.txt' |
  grep -v '[$]$' | sed -E 's/^\$\{?M5_SRC\}?\///; s/\.$//' | sort -u)
((n_paths >= 5)) || fail "found only $n_paths paths read through \$M5_SRC: the scan is broken"

# 3. The schemas: lib.sh reads them from spec/openapi/, and every file a test names is there.
[[ $M5_OPENAPI == "$M5_SRC/spec/openapi" ]] ||
  fail "tests/lib.sh reads the OpenAPI files from $M5_OPENAPI, not from spec/openapi/"
n_yaml=0
while IFS= read -r f; do
  [[ -f $SRC/spec/openapi/$f ]] || fail "a test validates against $f, which is not in spec/openapi/"
  n_yaml=$((n_yaml + 1))
done < <(grep -rhoE 'TS29[0-9]{3}_[A-Za-z0-9_]+\.yaml' "$SRC/tests" --include='*.sh' |
  sort -u)
((n_yaml >= 4)) || fail "found only $n_yaml OpenAPI files named by the tests: the scan is broken"
[[ -f $SRC/spec/openapi/README.md ]] || fail "spec/openapi/README.md (source and copyright) is missing"

# 4. No absolute path of a developer's machine where tests, make run or make bench run.
# (The bracket keeps this line from matching itself.)
if hits=$(search '(^|[^A-Za-z0-9_.~-])/wor[k]/' tests tools bench Makefile CMakeLists.txt); then
  printf '%s\n' "$hits" >&2
  fail "these files name an absolute path of a developer's machine"
fi

echo "ok: stands alone ($n_paths paths read through \$M5_SRC, $n_yaml OpenAPI files, all inside)"
