#!/usr/bin/env bash
# Runs every test binary of each build folder given, prints their TAP, and ends
# with one line "N passed, N failed" over all of them (exit 1 when any failed).
# VOLQ_TESTS: a glob of the binaries to run (default test_*); VOLQ_TEST_TIMEOUT:
# seconds per binary (default 600).
set -u
passed=0 failed=0
per_test_timeout=${VOLQ_TEST_TIMEOUT:-600}
pattern=${VOLQ_TESTS:-test_*}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for build in "$@"; do
  [ -d "$build/tests" ] || { echo "test.sh: $build/tests missing: build first" >&2; exit 2; }
  echo "# suite: $build"
  for t in "$build"/tests/$pattern; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    log=$(mktemp)
    VOLQ_SOURCE_DIR=$PWD VOLQ_BIN_DIR=$PWD/$build/bin timeout -k 5 "$per_test_timeout" "$t" >"$log" 2>&1
    rc=$?
    sed "s/^/[$name] /" "$log"
    ok=$(grep -c '^ok ' "$log")
    bad=$(grep -c '^not ok ' "$log")
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
      echo "[$name] not ok - $name exited $rc"
      bad=1
    fi
    passed=$((passed + ok)); failed=$((failed + bad))
    rm -f "$log"
  done
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
