"""``imos bench gpu`` / scripts/gpu_check.sh: what only a GPU can show, in under five minutes, as one JSON.

CUDA-vs-CPU parity of the engine (XMem architecture, synthetic weights), frames/s at 480p in fp32, fp16 and
bf16 for the bundled model and XMem's architecture, a batching curve of the encoders and of concurrent sessions
through the DynamicBatcher, TensorRT if importable; then the memory read (dense vs gathered top-k, which decides
affinity.prefer_gathered on CUDA) and, last as compiling takes a while, fp16 with torch.compile + CUDA graphs.
"""

from __future__ import annotations

import functools
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.bench.batching import sessions_curve
from service.bench.reader import measure_reader
from service.bench.synthetic_video import moving_ellipses
from service.engine.loader import load_engine
from service.engine.repo import default_repo_root


def _timed(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeat


def parity(repo: Path) -> dict[str, Any]:
    frames, masks = moving_ellipses(20, 96, 128, 2)
    out = {}
    for device in ("cpu", "cuda"):
        prop = load_engine(repo, "xmem-synthetic", "torch", device).propagator({"size": "-1", "mem_every": "3"})
        out[device] = np.stack([r.probs for r in prop.run(frames, masks[0], 0, "forward")])
    diff = np.abs(out["cpu"] - out["cuda"])
    return {"max_abs_diff": float(diff.max()), "frac_over_1e-4": float((diff.max(1) > 1e-4).mean()),
            "argmax_agreement": float((out["cpu"].argmax(1) == out["cuda"].argmax(1)).mean())}


def speed(repo: Path, model: str, precision: str, size: int = 480, frames: int = 40,
          compile: bool = False) -> dict[str, Any]:
    engine = load_engine(repo, model, "torch", "cuda", precision, compile=compile)
    video, masks = moving_ellipses(frames, size, size, 1)
    prop = engine.propagator({"size": "-1"})
    stamps = []
    for _ in prop.run(video, masks[0], 0, "forward"):
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    steady = stamps[5:]
    return {"model": model, "precision": precision, "size": size, "compile": compile,
            "frames_per_s": round((len(steady) - 1) / (steady[-1] - steady[0]), 1),
            "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def batching(repo: Path, model: str, size: int = 480) -> dict[str, Any]:
    engine = load_engine(repo, model, "torch", "cuda", "fp16")
    curve = {}
    for batch in (1, 2, 4, 8, 16):
        image = torch.randn(batch, 3, size, size, device="cuda")
        seconds = _timed(functools.partial(engine.stages.encode_key, image), 10)
        curve[str(batch)] = round(batch / seconds, 1)
    # aggregate frames/s of 1..8 concurrent sessions through the worker's DynamicBatcher, and without it
    sessions = sessions_curve(engine, size, frames=12)
    return {"model": model, "encode_key_images_per_s": curve,
            "gain_8_vs_1": round(curve["8"] / curve["1"], 2), "sessions": sessions}


def tensorrt_probe() -> dict[str, Any]:
    try:
        import tensorrt
    except ImportError:
        return {"available": False, "reason": "tensorrt is not installed in this image"}
    return {"available": True, "version": tensorrt.__version__}


def run(out: Path, repo: Path | None = None) -> dict[str, Any]:
    repo = repo or default_repo_root()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "cuda": torch.version.cuda, "python": platform.python_version()}
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("parity", lambda: parity(repo)),
        ("speed", lambda: [speed(repo, m, p) for m in ("imos-lite", "xmem-synthetic")
                           for p in ("fp32", "fp16", "bf16")]),
        ("batching", lambda: [batching(repo, m) for m in ("imos-lite", "xmem-synthetic")]),
        ("tensorrt", tensorrt_probe),
        ("reader", lambda: measure_reader("cuda")),
        ("compiled", lambda: [speed(repo, "imos-lite", "fp16", compile=True)])]
    for name, step in steps:
        started = time.perf_counter()
        try:
            report[name] = step()
        except Exception as exc:  # one failing step must not lose the others' results
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        report[f"{name}_s"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    import sys

    print(json.dumps(run(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_check.json")), indent=2))
