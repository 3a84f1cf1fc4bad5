#!/usr/bin/env bash
# Install Debian packages the tests need (usage: install_debian_packages.sh PKG...).
# Idempotent: when every package is already installed it does nothing; `apt-get update` runs only
# when the package lists do not know the packages yet (a fresh machine) or the install fails on stale lists.
set -euo pipefail
PKGS=("$@")
if [ ${#PKGS[@]} -eq 0 ]; then echo "usage: $0 PACKAGE..." >&2; exit 2; fi

installed() {
  local p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
}

known() {
  local p
  for p in "${PKGS[@]}"; do
    apt-cache show "$p" >/dev/null 2>&1 || return 1
  done
}

if installed; then
  echo "already installed: ${PKGS[*]}"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! known; then
  $SUDO apt-get update -q
fi
# Stale lists can point at versions the mirror no longer has: refresh once and retry.
if ! $SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"
fi
echo "installed: $(dpkg-query -W -f='${Package} ${Version}\n' "${PKGS[@]}" | tr '\n' ' ')"
