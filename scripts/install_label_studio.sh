#!/usr/bin/env bash
# Install Label Studio 1.23.2 (with its SDK) into its own venv for the Label Studio tests and CI:
# about 1 GB, so it lives outside the clone (IMOS_LABEL_STUDIO_VENV, default
# /var/cache/imos/label-studio-1.23.2) and is reused while its stamp is there.
# sentry-sdk 3 removed an option Label Studio 1.23.2 passes at start-up, hence the pin.
set -euo pipefail
VENV=${IMOS_LABEL_STUDIO_VENV:-/var/cache/imos/label-studio-1.23.2}
PY=${PYTHON:-python3}
stamp="$VENV/.imos-installed"
if [ -f "$stamp" ]; then
  echo "Label Studio already installed in $VENV"
  exit 0
fi
mkdir -p "$(dirname "$VENV")"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "label-studio==1.23.2" "sentry-sdk>=2.16,<3"
"$VENV/bin/python" -c "import label_studio, label_studio_sdk; print('Label Studio', label_studio.__version__)"
touch "$stamp"
