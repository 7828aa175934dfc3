#!/usr/bin/env bash
# make demo: a sample V3 storage domain of old (compat 0.10) disks, the embedded
# stack (`volq up`), a bulk upgrade with its progress bar, the result, then
# everything it started is stopped.
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/$build/bin"
work="$top/$build/demo"
rm -rf "$work"; mkdir -p "$work/domains"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '\n== %s\n' "$*"; }

# A free loopback port for the API, starting at the default.
port=8085
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
export VOLQ_API="http://127.0.0.1:$port"

say "Making a sample V3 storage domain: 16 disks"
cat <<'EOT'
   12 VM disks with chains of 3 volumes at compat 0.10 (in 4 of them the top
      volume is already at 1.1: their older volumes are still amended),
    1 template disk (templates are never amended: they stay at 0.10),
    2 thin disks on that template (their own volumes are amended, not the template's),
    1 raw disk (nothing to amend).
The QCOW_VERSION column shows each disk's top (leaf) volume.
EOT
sd=$("$top/scripts/mkdomain.sh" "$work/domains" --version 3 --disks 12 --chain 3 --data-mib 1 \
      --template --thin 2 --raw 1 --mixed)
echo "storage domain $sd under $work/domains"

say "Starting the embedded stack: volq up --workers 2"
"$bin/volq" up --workers 2 --state "$work/state" --domains "$work/domains" \
  --listen "127.0.0.1:$port" >"$work/up.log" 2>&1 &
up=$!
cleanup() {
  kill -TERM "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
}
trap cleanup EXIT
deadline=$((SECONDS + 30))
until "$bin/volq" status >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$up" 2>/dev/null; then
    echo "demo: the stack did not come up; its log:" >&2; cat "$work/up.log" >&2; exit 1
  fi
  sleep 0.1
done

say "volq disks $sd   (before)"
"$bin/volq" disks "$sd"

say "volq upgrade-domain $sd --to-v4 --wait"
rc=0
"$bin/volq" upgrade-domain "$sd" --to-v4 --wait || rc=$?

say "volq disks $sd   (after)"
"$bin/volq" disks "$sd"

say "volq status"
"$bin/volq" status

say "The last audit events"
"$bin/volq" events | tail -n 8

say "Stopping the stack"
cleanup
trap - EXIT
echo "demo: done (upgrade exit status $rc); files are under $work"
exit "$rc"
