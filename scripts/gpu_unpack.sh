#!/usr/bin/env bash
# After scripts/gpu_session.sh ran on a device: install the model it trained as a repository entry and
# score it on all of dev (both protocols), here on the CPU.
#   bash scripts/gpu_unpack.sh DIR      (DIR: the device call's files_at)
# Environment: NAME (the entry, default imos-lite-gpu), IMOS (default .venv/bin/imos), DEV (../shared/data/dev),
# SCORE=0 to skip the evaluation.
set -euo pipefail
dir=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
name=${NAME:-imos-lite-gpu}
imos=${IMOS:-.venv/bin/imos}
dev=${DEV:-../shared/data/dev}
logs=out/gpu-session
mkdir -p "$logs"
[ -f "$dir/session.log" ] && cp "$dir/session.log" "$logs/"
[ -f "$dir/gpu_check.json" ] && cp "$dir/gpu_check.json" "$logs/"
[ -f "$dir/session.tar.gz" ] && tar -xzf "$dir/session.tar.gz" -C "$logs"
shopt -s nullglob
parts=("$dir"/weights.part*)
[ ${#parts[@]} -gt 0 ] || { echo "no trained weights in $dir (see $logs/session.log)"; exit 2; }
if [ ! -f "$logs/model.yaml" ]; then
  # the run was cut before it wrote its entry: imos-lite's architecture and settings, provenance said so
  .venv/bin/python - "$logs/model.yaml" "$name" <<'PY'
import sys
from pathlib import Path

import yaml

meta = yaml.safe_load(Path("model_repo/imos-lite/model.yaml").read_text())
meta.update(name=sys.argv[2], description="imos-lite architecture trained on a GPU by scripts/gpu_session.sh; "
            "the run was cut before it wrote its entry, so these are its best evaluated or newest "
            "checkpoint's weights (see out/gpu-session/session.log)", dev_scores=None, inference_settings=None,
            provenance={"command": "scripts/gpu_session.sh", "note": "entry rebuilt by scripts/gpu_unpack.sh"})
Path(sys.argv[1]).write_text(yaml.safe_dump(meta, sort_keys=False))
PY
fi
last=$(find "model_repo/$name" -mindepth 1 -maxdepth 1 -name '[0-9]*' -printf '%f\n' 2>/dev/null | sort -n | tail -1 || true)
version=$(( ${last:-0} + 1 ))
mkdir -p "model_repo/$name/$version"
cp "$logs/model.yaml" "model_repo/$name/model.yaml"
cat "${parts[@]}" > "model_repo/$name/$version/weights.safetensors"
echo "installed $name:$version"
if [ "${SCORE:-1}" != 0 ]; then
  "$imos" eval "$dev" --model "$name" --protocol both --json "$logs/$name-dev.json" --quiet
fi
