#!/usr/bin/env bash
# Installs, only when missing, the headless browser the dashboard test drives
# (Debian's chromium).  Prints the browser's path on stdout; exits 1 with one
# line on stderr when it cannot be installed (no root, no network).
# VOLQ_CHROMIUM, when set, names a browser to use instead.
set -euo pipefail

if [ -n "${VOLQ_CHROMIUM:-}" ]; then
  [ -x "$VOLQ_CHROMIUM" ] && { echo "$VOLQ_CHROMIUM"; exit 0; }
  echo "setup-browser: VOLQ_CHROMIUM=$VOLQ_CHROMIUM is not executable" >&2; exit 1
fi

find_browser() {
  local c
  for c in /usr/bin/chromium /usr/bin/chromium-browser; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}

find_browser && exit 0

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null || {
    echo "setup-browser: chromium is missing; run as root or apt-get install chromium" >&2; exit 1; }
  SUDO="sudo -n"
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# Serialise with other apt users (another test or setup.sh running at once).
exec 9>/tmp/volq-setup-browser.lock
flock -w 600 9 || { echo "setup-browser: another install holds the lock" >&2; exit 1; }
find_browser && exit 0
echo "setup-browser: installing chromium" >&2
if ! $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1; then
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 || {
    echo "setup-browser: apt-get install chromium failed" >&2; exit 1; }
fi
find_browser || { echo "setup-browser: chromium installed but not found" >&2; exit 1; }
