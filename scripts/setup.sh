#!/usr/bin/env bash
# Create .venv with the CPU build of torch and iMOS Serve installed (editable) with its test tools.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.imos-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  # Pinned CPU wheel: an unpinned torch would pull a multi-GB CUDA build (the GPU image pins its own).
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[test]"
  # MONAI Label's client (what 3D Slicer's module uses) for the Slicer tests; its own dependencies (MONAI,
  # torch ranges, a server stack) are not needed by the client, so it goes in without them
  python -m pip install -q --no-deps "monailabel==0.8.5"
  touch "$stamp"
fi
# gRPC stubs are generated from proto/ at build time, never committed
python -m service.gateway.protos >/dev/null
