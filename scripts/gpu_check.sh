#!/usr/bin/env bash
# GPU check (issue: performance). Needs only PyTorch (CUDA), ONNX, ONNX Runtime: run it on a GPU host with
#   bash scripts/gpu_check.sh [OUT_DIR]
# It installs the project's pure-Python dependencies without touching the host's torch, then writes
# OUT_DIR/gpu_check.json (parity, frames/s fp32/fp16/bf16, batching curve, TensorRT if importable).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-out}}
mkdir -p "$out"
python -m pip install -q --no-deps -e . >/dev/null 2>&1 || true
python -m pip install -q safetensors pyyaml pydantic pydantic-settings pillow >/dev/null 2>&1 || true
timeout 290 python -m service.bench.gpu "$out/gpu_check.json"
