#!/usr/bin/env bash
# Quick start: set up, then segment a generated sample sequence with the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
out=${IMOS_DEMO_OUT:-out/demo}
mkdir -p "$out"
python - "$out" <<'PY'
import sys
from pathlib import Path
import numpy as np
from service.bench.synthetic_video import moving_ellipses
out = Path(sys.argv[1])
frames, masks = moving_ellipses(24, 96, 128, objects=2)
np.save(out / "frames.npy", np.stack(frames))
np.save(out / "mask12.npy", masks[12])
print(f"sample sequence: {out}/frames.npy (24 frames, 96x128, 2 objects), annotation of frame 12: {out}/mask12.npy")
PY
imos segment "$out/frames.npy" --mask "$out/mask12.npy" --frame 12 --direction both -o "$out/masks"
