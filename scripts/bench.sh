#!/usr/bin/env bash
# Runs every benchmark of bench/ (built as BUILD/bench/bench_NAME) against the
# real programs of BUILD/bin, a real redis-server and the real qemu-img.  Each
# prints "name: value unit" lines and ends with "target: ... PASS|MISS"; this
# script keeps every line in BUILD/bench-results.txt and ends with the target
# lines together.  docs/performance.md explains each figure.
#
#   scripts/bench.sh [BUILD]          (make bench; BUILD defaults to build)
#   VOLQ_BENCH_ONLY="queue http"      only those benchmarks
#   VOLQ_BENCH_DIR=/path              scratch folder on the disk under test
#                                     (default BUILD/bench-work)
set -u
build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
[ -d "$build/bench" ] || { echo "bench.sh: $build/bench missing: build first (make)" >&2; exit 2; }
build=$(cd "$build" && pwd)

# Debian's wrk for bench/http, installed like every other missing tool.
if ! command -v wrk >/dev/null 2>&1; then
  echo "bench.sh: installing wrk (apt-get)" >&2
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y wrk >/dev/null 2>&1 ||
    { $sudo apt-get update >/dev/null 2>&1 && $sudo apt-get install -y wrk >/dev/null 2>&1; } ||
    echo "bench.sh: could not install wrk; bench/http will report it" >&2
fi

export VOLQ_SOURCE_DIR=$src VOLQ_BIN_DIR=$build/bin
# bulk first: it is the one most hurt by a busy disk, and the disk is quietest
# before the others have written their files.
order=${VOLQ_BENCH_ONLY:-bulk queue list http memory recovery}
results=$build/bench-results.txt
per_bench_timeout=${VOLQ_BENCH_TIMEOUT:-600}

{
  echo "# volq benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# $(redis-server --version | cut -d' ' -f1-3), $(qemu-img --version | head -1)"
  echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$results"

# Before each benchmark: the last one's writes and deletions reach the disk
# first (bench/bulk deletes ~3 GB of copies at its end; their writeback and
# discards slowed the scan of the next one by a third).  Polls the disk's
# busy time until it stops moving for 0.5 s, 30 s at most.
settle() {
  sync
  local src dev stat t0 t1 quiet=0 deadline=$(($(date +%s) + 30))
  src=$(findmnt -no SOURCE --target "${VOLQ_BENCH_DIR:-${TMPDIR:-/tmp}}" 2>/dev/null)
  dev=$(lsblk -no PKNAME "$src" 2>/dev/null | head -1)
  [ -n "$dev" ] || dev=$(lsblk -ndo NAME "$src" 2>/dev/null | head -1)
  stat=/sys/block/$dev/stat
  [ -r "$stat" ] || return 0
  t0=$(awk '{print $10}' "$stat")
  while [ "$quiet" -lt 5 ] && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 0.1
    t1=$(awk '{print $10}' "$stat")
    if [ "$t1" = "$t0" ]; then quiet=$((quiet + 1)); else quiet=0; fi
    t0=$t1
  done
}

failed=0
for name in $order; do
  settle
  bin=$build/bench/bench_$name
  [ -x "$bin" ] || { echo "bench.sh: $bin missing" >&2; failed=$((failed + 1)); continue; }
  echo "## bench/$name" | tee -a "$results"
  start=$(date +%s)
  # --foreground: a Ctrl-C reaches the benchmark, which stops what it started
  timeout --foreground -k 10 "$per_bench_timeout" "$bin" 2>&1 | tee -a "$results"
  rc=${PIPESTATUS[0]}
  echo "# bench/$name: $(($(date +%s) - start)) s, load $(cut -d' ' -f1-3 /proc/loadavg)" |
    tee -a "$results"
  [ "$rc" = 0 ] || { echo "bench.sh: bench/$name exited $rc" >&2; failed=$((failed + 1)); }
done

targets=$(grep '^target: ' "$results")
pass=$(grep -c ' PASS$' <<<"$targets")
miss=$(grep -c ' MISS$' <<<"$targets")
{
  echo "## summary"
  echo "$targets"
  echo "$pass PASS, $miss MISS, $failed did not run to the end (every line: $results)"
} | tee -a "$results"
[ "$failed" = 0 ]
