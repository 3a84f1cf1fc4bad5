#!/usr/bin/env bash
# Quick start: set up, start the service with its bundled model (embedded mode: in-memory store),
# send a sample request (a generated 24-frame sequence annotated on frame 12), then keep serving.
# IMOS_DEMO_EXIT=1 stops the service after the sample request.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
out=${IMOS_DEMO_OUT:-out/demo}
port=${IMOS_HTTP_PORT:-8000}
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
print(f"sample: {out}/frames.npy (24 frames, 96x128, 2 objects), annotation of frame 12: {out}/mask12.npy")
PY
IMOS_LOG_JSON=false imos serve --http-port "$port" > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { cat "$out/serve.log"; exit 1; }
  sleep 0.3
done
curl -fsS "http://127.0.0.1:$port/v1/models"; echo
imos segment "$out/frames.npy" --mask "$out/mask12.npy" --frame 12 --direction both \
  --server "http://127.0.0.1:$port" -o "$out/masks"
if [ "${IMOS_DEMO_EXIT:-0}" = "1" ]; then exit 0; fi
echo "service running: REST http://127.0.0.1:$port (OpenAPI at /docs), gRPC 127.0.0.1:50051; Ctrl-C stops it"
wait $server
