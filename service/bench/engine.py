"""``imos bench engine``: frames/s and peak memory per backend, each in its own process."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from service.bench.synthetic_video import moving_ellipse
from service.engine.loader import load_engine


def measure(repo: Path, model: str, backend: str, size: int, frames: int, objects: int,
            device: str = "cpu", precision: str = "fp32", threads: int | None = None,
            compile: bool = False) -> dict[str, Any]:
    """Propagate a synthetic size x size sequence forward; time everything after frame 2.

    threads: CPU threads for torch and for onnxruntime's intra-op pool (default: all cores).
    On a machine where another job holds a core, equal thread counts keep the comparison fair.
    compile: torch.compile the torch stages (compiling happens on the untimed first frames).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    t_load = time.perf_counter()
    engine = load_engine(repo, model, backend, device, precision, threads=threads, compile=compile)
    load_s = time.perf_counter() - t_load
    video, mask = moving_ellipse(frames, size, size, objects)
    prop = engine.propagator({"size": -1})
    stamps = []
    for _ in prop.run(video, mask, 0, "forward"):
        stamps.append(time.perf_counter())
    steady = stamps[2:]
    fps = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    return {
        "model": engine.model_id, "backend": engine.stages.name, "device": device, "precision": precision,
        "size": [size, size], "frames": frames, "objects": objects, "frames_per_s": round(fps, 3),
        "ms_per_frame": round(1000 / fps, 1) if fps == fps else None, "load_s": round(load_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(), "threads": threads, "compile": compile,
    }


def run_isolated(repo: Path, model: str, backend: str, size: int, frames: int, objects: int,
                 device: str, precision: str, threads: int | None = None, compile: bool = False) -> dict[str, Any]:
    """measure() in a fresh interpreter so peak memory belongs to this configuration alone."""
    args = json.dumps([str(repo), model, backend, size, frames, objects, device, precision, threads, compile])
    proc = subprocess.run([sys.executable, "-m", "service.bench.engine", args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    if proc.returncode != 0:
        return {"model": model, "backend": backend, "precision": precision,
                "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


if __name__ == "__main__":
    r, m, b, s, f, o, d, p, t, c = json.loads(sys.argv[1])
    print(json.dumps(measure(Path(r), m, b, s, f, o, d, p, t, c)))
