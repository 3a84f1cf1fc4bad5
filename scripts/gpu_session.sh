#!/usr/bin/env bash
# One prepared device session (issues: model quality, performance): the GPU check, then imos-lite trained
# on CUDA for the time left, everything the session learns written to $OUT.
#   here, first:   python scripts/gpu_pack.py      (.gpu/: shippable training data + the dev subset)
#   one call:      run(command="bash scripts/gpu_session.sh", carry=[".gpu"], timeout_s=600)
#   here, after:   bash scripts/gpu_unpack.sh DIR   (DIR: the call's files_at; installs the model, scores it)
# Environment: BUDGET_S (whole script, default 560), CHECK_S (GPU check, default 150; 0 skips it),
# DEVICE (cuda), CONFIG (configs/imos-lite-gpu.yaml), CAL_STEPS (40), PYTHON (python3).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
out=${OUT:-out/gpu-session}
py=${PYTHON:-python3}
budget=${BUDGET_S:-560}
check_s=${CHECK_S:-150}
device=${DEVICE:-cuda}
config=${CONFIG:-configs/imos-lite-gpu.yaml}
cal_steps=${CAL_STEPS:-40}
work=${WORK:-/tmp/imos-gpu-session}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$out" "$work"
t0=$(date +%s)
left() { echo $((budget - ($(date +%s) - t0))); }
note() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$out/session.log"; }
[ -d .gpu/train ] || { note "no .gpu/train: run python scripts/gpu_pack.py here and carry .gpu"; exit 2; }

{ date -u; nvidia-smi 2>&1 || true
  $py -c "import platform, torch; print('python', platform.python_version(), 'torch', torch.__version__,
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"; } > "$out/env.txt" 2>&1
note "env: $(tail -1 "$out/env.txt")"

if [ "$check_s" -gt 0 ]; then
  timeout "$check_s" "$py" -m service.bench.gpu "$out/gpu_check.json" > "$out/gpu_check.log" 2>&1
  note "gpu check: exit $? ($(left) s left)"
fi

train=("$py" -m service.cli.training train --config "$config" --data .gpu/train
       --datasets "hippocampus,hc18" --device "$device")
"${train[@]}" --out "$work/cal" --name imos-lite-cal --steps "$cal_steps" --no-eval > "$work/cal.log" 2>&1
cal=$?
cp "$work/cal/log.jsonl" "$out/calibrate.jsonl" 2>/dev/null
[ $cal -eq 0 ] || { tail -20 "$work/cal.log" | tee -a "$out/session.log"; note "calibration failed"; exit 3; }
steps=$("$py" scripts/gpu_plan.py "$work/cal/log.jsonl" "$(left)" --margin "${MARGIN:-60}" --round "${ROUND:-100}")
note "calibrated: $steps steps fit in $(left) s"

# --time-limit stops cleanly (last evaluation, checkpoint, model written) should the plan run long;
# timeout is the last resort.
timeout $(($(left) - 5)) "${train[@]}" --out "$work/train" --name imos-lite-gpu --steps "$steps" \
  --eval-root .gpu/dev --time-limit $(($(left) - ${FINISH_S:-90})) > "$out/train.log" 2>&1
note "training: exit $? ($(left) s left)"
cp "$work/train/log.jsonl" "$out/log.jsonl" 2>/dev/null
entry=$(find model_repo/imos-lite-gpu -mindepth 1 -maxdepth 1 -name '[0-9]*' 2>/dev/null | sort -V | tail -1)
if [ -n "$entry" ] && [ -f "$entry/weights.safetensors" ]; then
  cp model_repo/imos-lite-gpu/model.yaml "$out/model.yaml"
  # files come back at most 16 MiB each: the weights travel in parts
  split -b 15000000 -d "$entry/weights.safetensors" "$out/weights.part"
  parts=("$out"/weights.part*)
  note "model written: $entry (${#parts[@]} parts)"
else
  # cut before it wrote its entry: the best evaluated weights, else the newest checkpoint's
  "$py" - "$work/train" "$work/fallback.safetensors" <<'PY' >> "$out/session.log" 2>&1
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from service.training import checkpoints

run, dest = Path(sys.argv[1]), sys.argv[2]
if (run / "best.safetensors").is_file():
    weights, origin = load_file(str(run / "best.safetensors")), "best.safetensors"
else:
    snap = checkpoints.load_latest(run / "checkpoints")
    if snap is None:
        sys.exit("no checkpoint to fall back on")
    weights, origin = {k: v.contiguous() for k, v in snap.model.items()}, f"checkpoint of step {snap.step}"
save_file(weights, dest)
print(f"fallback weights: {origin}")
PY
  [ -f "$work/fallback.safetensors" ] && split -b 15000000 -d "$work/fallback.safetensors" "$out/weights.part" \
    && note "no model entry: weights from the run's best or newest checkpoint, in parts"
fi
# at most 8 files come back: the logs travel as one archive
logs=()
for f in env.txt gpu_check.log calibrate.jsonl train.log log.jsonl model.yaml; do
  [ -f "$out/$f" ] && logs+=("$f")
done
if [ ${#logs[@]} -gt 0 ] && tar -czf "$out/session.tar.gz" -C "$out" "${logs[@]}"; then
  (cd "$out" && rm -f "${logs[@]}")
fi
note "done"
