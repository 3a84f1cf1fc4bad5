#!/usr/bin/env bash
# Install Orthanc and its DICOMweb plugin from Debian packages (for the integration tests and CI).
# Idempotent: when both packages are already installed it does nothing; `apt-get update` runs only
# when the package lists do not know the packages yet (a fresh machine) or the install fails on stale lists.
set -euo pipefail
PKGS=(orthanc orthanc-dicomweb)

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
  echo "orthanc and orthanc-dicomweb already installed"
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
# The Debian package starts a system Orthanc service where systemd runs; the tests start their own on
# free loopback ports, so the packaged service is left as the system configured it.
echo "installed: $(dpkg-query -W -f='${Package} ${Version}\n' "${PKGS[@]}" | tr '\n' ' ')"
