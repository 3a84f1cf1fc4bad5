#!/usr/bin/env bash
# Install OHIF's DICOM SEG loader (@cornerstonejs/adapters with its peers, pinned in
# tests/e2e/ohif/package.json and its lockfile) from the npm registry for the SEG test and CI. It lives outside the
# clone (IMOS_OHIF_DIR, default /var/cache/imos/ohif-5.14.0) and is reused while its stamp matches.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${IMOS_OHIF_DIR:-/var/cache/imos/ohif-5.14.0}
stamp="$DIR/.imos-installed"
want=$(cat tests/e2e/ohif/package.json tests/e2e/ohif/package-lock.json | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "OHIF SEG loader already installed in $DIR"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  apt_get="apt-get"
  if [ "$(id -u)" -ne 0 ]; then apt_get="sudo apt-get"; fi
  $apt_get update -q && $apt_get install -y -q --no-install-recommends nodejs npm
fi
mkdir -p "$DIR"
cp tests/e2e/ohif/package.json tests/e2e/ohif/package-lock.json "$DIR/"
(cd "$DIR" && npm ci --no-audit --no-fund --silent)
echo "$want" > "$stamp"
echo "OHIF SEG loader installed in $DIR"
