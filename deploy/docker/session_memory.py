"""Measure memory per session for sizing (docs/operations.md, "Sizing").

    docker compose run --rm worker python /opt/imos/session_memory.py --model xmem --backend tensorrt
    python deploy/docker/session_memory.py --model xmem --device cuda --backend torch --sessions 1,2,4

Propagates S synthetic 480p sequences (854x480, moving ellipses) forward at once, frame by frame and
interleaved, as a worker with IMOS_WORKER_CONCURRENCY=S does, and prints one JSON line per S:

- state_bytes_per_pass: the memory bank of one pass after the last frame (keys, values, long-term store,
  sensory state), as serialised; these tensors live on the worker's device while a pass runs, and in
  Redis (checkpoints) between runs. A session propagated both ways holds two passes.
- device_peak_bytes / device_per_session_bytes (CUDA only): peak device memory in use by this process,
  above the loaded model, read from the driver (cudaMemGetInfo, so TensorRT's own allocations count) and
  from torch's allocator; the per-session figure is (peak(S) - model) / S.
- model_bytes (CUDA only): device memory after loading the model, before any session.
- rss_peak_bytes: the process's peak resident memory (CPU runs).

Run it on the GPU type you deploy on, with the backend and precision you deploy with.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if (ROOT / "service").is_dir():  # run from a checkout; in the images the service is installed
    sys.path.insert(0, str(ROOT))

from service.bench.synthetic_video import moving_ellipses
from service.engine import state_codec
from service.engine.loader import load_engine
from service.engine.repo import default_repo_root


def device_used(device: torch.device) -> int:
    free, total = torch.cuda.mem_get_info(device)
    return int(total - free)


def measure(model: str, backend: str, device: str, precision: str, sessions: int, frames: int, objects: int,
            height: int, width: int, repo: Path) -> dict[str, object]:
    engine = load_engine(repo, model, backend, device, precision)
    dev = engine.stages.device
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        model_used, model_alloc = device_used(dev), torch.cuda.memory_allocated(dev)
    video, masks = moving_ellipses(frames, height, width, objects)
    prop = engine.propagator({"size": -1})  # the frames are already 480p
    states, peak_used = [], 0
    started = time.perf_counter()
    for _ in range(sessions):
        state, _ = prop.start(video[0], masks[0], 0, "forward", frames)
        states.append(state)
    for t in range(1, frames):
        for i, state in enumerate(states):
            states[i], _ = prop.advance(state, video[t])
        if cuda:
            torch.cuda.synchronize(dev)
            peak_used = max(peak_used, device_used(dev))
    elapsed = time.perf_counter() - started
    out: dict[str, object] = {
        "model": engine.model_id, "backend": engine.stages.name, "device": str(dev), "precision": precision,
        "frame": [height, width], "frames": frames, "objects": objects, "sessions": sessions,
        "state_bytes_per_pass": max(len(state_codec.encode(s)) for s in states),
        "frames_per_s": round(sessions * (frames - 1) / elapsed, 2),
        "rss_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if cuda:
        torch_peak = torch.cuda.max_memory_allocated(dev) - model_alloc
        out.update({"gpu": torch.cuda.get_device_name(dev), "model_bytes": model_used,
                    "device_peak_bytes": peak_used - model_used, "torch_peak_bytes": torch_peak,
                    "device_per_session_bytes": (peak_used - model_used) // sessions})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="imos-lite")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnx", "tensorrt"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--sessions", default="1", help="comma-separated session counts, e.g. 1,2,4")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--model-repo", type=Path, default=None)
    args = ap.parse_args()
    for s in (int(x) for x in args.sessions.split(",")):
        print(json.dumps(measure(args.model, args.backend, args.device, args.precision, s, args.frames,
                                 args.objects, args.height, args.width, args.model_repo or default_repo_root())),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
