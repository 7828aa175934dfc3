#!/usr/bin/env bash
# Install, only when missing, what volq needs to build, test and run on Debian 12.
# Called by `make test`, `make demo` and `make bench`; safe to run again.
set -euo pipefail

# iproute2: ip(8), for the network namespaces of tests/integ/test_multihost.c.
PKGS=(cmake make gcc pkg-config libevent-dev libhiredis-dev libjansson-dev uuid-dev
      qemu-utils redis-server iproute2)
# Optional packages used by some targets; installed when the caller asks for them.
[ "${VOLQ_SETUP_EXTRA:-}" ] && read -r -a extra <<<"$VOLQ_SETUP_EXTRA" && PKGS+=("${extra[@]}")

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
  command -v sudo >/dev/null || { echo "setup: missing packages ${missing[*]}; run as root or install them" >&2; exit 1; }
else
  SUDO=
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged redis-server as a service; volq runs its own, so leave the
# system one alone (it listens on 6379 only and never touches volq's sockets).
