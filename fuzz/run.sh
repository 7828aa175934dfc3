#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang and runs each for a while.
#   fuzz/run.sh BUILD_DIR SECONDS [TARGET...]     (TARGET: meta, qcow2, ...; default all)
# New inputs go to BUILD_DIR/corpus/TARGET (fuzz/corpus/TARGET are the seeds,
# read only), crashes to BUILD_DIR/crashes/TARGET/, logs to BUILD_DIR/logs/.
# One line per target:
#   fuzz: meta: ok: 123456 runs in 10 s, 12345 exec/s, cov 456, ft 789, corpus 12
# or "fuzz: meta: CRASH ...".  Exit 0 when no target crashed, 1 when one did,
# 2 when clang or the build is missing.
set -u
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
src=$(cd "$(dirname "$0")" && pwd)

command -v clang >/dev/null || { echo "fuzz: clang is missing (make fuzz installs it)" >&2; exit 2; }
if [ ! -f "$build/Makefile" ]; then
  cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang >"$build.cmake.log" 2>&1 ||
    { echo "fuzz: cmake failed, see $build.cmake.log" >&2; exit 2; }
  rm -f "$build.cmake.log"
fi
log=$(mktemp)
if ! cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >"$log" 2>&1; then
  grep -E 'error|Error' "$log" | head -20 >&2
  rm -f "$log"
  echo "fuzz: build failed" >&2
  exit 2
fi
rm -f "$log"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$src"/fuzz_*.c; do t=$(basename "$f" .c); targets+=("${t#fuzz_}"); done
fi

# Per target options: qcow2 headers reach past libFuzzer's default 4 KiB.
opts_for() {
  case "$1" in
    qcow2) echo "-max_len=16384" ;;
    *) echo "" ;;
  esac
}

# "stat::name: value" of libFuzzer's final stats.
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

crashed=0
for t in "${targets[@]}"; do
  bin=$build/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz: $t: no such target" >&2; crashed=1; continue; }
  mkdir -p "$build/corpus/$t" "$build/crashes/$t" "$build/logs"
  out=$build/logs/$t.log
  # shellcheck disable=SC2046
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$t/" $(opts_for "$t") \
    "$build/corpus/$t" "$src/corpus/$t" >"$out" 2>&1
  rc=$?
  runs=$(stat number_of_executed_units "$out")
  eps=$(stat average_exec_per_sec "$out")
  last=$(grep -E '^#[0-9]+' "$out" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $t: ok: ${runs:-0} runs in $seconds s, ${eps:-0} exec/s, cov ${cov:-0}, ft ${ft:-0}, corpus ${corp:-0}"
  else
    crashed=1
    art=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$out" | tail -1)
    echo "fuzz: $t: CRASH (exit $rc) after ${runs:-?} runs: ${art:-see $out}"
    grep -m3 -E 'ERROR|invariant broken|runtime error' "$out" | sed 's/^/fuzz:   /'
  fi
done
exit "$crashed"
