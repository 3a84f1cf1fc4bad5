"""``imos bench engine``: frames/s, time per stage and peak memory per backend, each in its own process."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from service.bench.synthetic_video import moving_ellipse
from service.engine.host import cpu_info, native_bf16, onednn_isa_cap
from service.engine.loader import load_engine


def measure(repo: Path, model: str, backend: str, size: int, frames: int, objects: int,
            device: str = "cpu", precision: str = "fp32", threads: int | None = None,
            compile: bool = False, settings: dict[str, str] | None = None) -> dict[str, Any]:
    """Propagate a synthetic size x size sequence forward; time everything after frame 2.

    threads: CPU threads for torch and for onnxruntime's intra-op pool (default: all cores).
    On a machine where another job holds a core, equal thread counts keep the comparison fair.
    compile: torch.compile the torch stages (compiling happens on the untimed first frames).
    settings: memory settings over the model's own (``--set``), e.g. flow_weight=0 to price a lever.
    stage_ms_per_frame splits the same frames' time by stage; on CUDA, where calls return before the
    GPU finishes, time moves to whichever later call waits for it.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    t_load = time.perf_counter()
    engine = load_engine(repo, model, backend, device, precision, threads=threads, compile=compile)
    load_s = time.perf_counter() - t_load
    video, mask = moving_ellipse(frames, size, size, objects)
    timer = _StageTimer(engine.stages)
    prop = engine.propagator({**(settings or {}), "size": -1, "size_rule": ""})  # frames stay size x size
    stamps = []
    for _ in prop.run(video, mask, 0, "forward"):
        stamps.append(time.perf_counter())
        if len(stamps) == 3:
            timer.totals.clear()  # the stage split covers the same steady frames as frames/s
    steady = stamps[2:]
    fps = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    return {
        "model": engine.model_id, "backend": engine.stages.name, "device": device, "precision": engine.precision,
        "precision_reason": engine.precision_reason, "size": [size, size], "frames": frames, "objects": objects,
        "frames_per_s": round(fps, 3),
        "ms_per_frame": round(1000 / fps, 1) if fps == fps else None, "load_s": round(load_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(), "threads": threads, "compile": compile,
        "settings": {k: v for k, v in dataclasses.asdict(prop.config).items() if k in _LEVERS},
        "stage_ms_per_frame": timer.split(steady),
    }


class _StageTimer:
    """Wraps the three stage methods of ``stages`` (in place) and adds up their wall time per stage."""

    def __init__(self, stages: Any) -> None:
        self.totals: dict[str, float] = {}
        for name in ("encode_key", "encode_value", "segment"):
            setattr(stages, name, self._timed(name, getattr(stages, name)))

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start
        return call

    def split(self, steady: list[float]) -> dict[str, float] | None:
        """ms per frame of each stage over the steady frames, and the rest (memory read, pre/post-processing)."""
        frames = len(steady) - 1
        if frames < 1:
            return None
        per = {name: 1000 * t / frames for name, t in self.totals.items()}
        per["memory_and_rest"] = 1000 * (steady[-1] - steady[0]) / frames - sum(per.values())
        return {name: round(ms, 1) for name, ms in per.items()}


# The settings that change the engine's cost per frame, reported with every run.
_LEVERS = ("flow_weight", "end_fraction", "mem_every", "top_k")


def run_isolated(repo: Path, model: str, backend: str, size: int, frames: int, objects: int,
                 device: str, precision: str, threads: int | None = None, compile: bool = False,
                 settings: dict[str, str] | None = None) -> dict[str, Any]:
    """measure() in a fresh interpreter so peak memory belongs to this configuration alone."""
    args = json.dumps([str(repo), model, backend, size, frames, objects, device, precision, threads, compile,
                       settings or {}])
    proc = subprocess.run([sys.executable, "-m", "service.bench.engine", args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    if proc.returncode != 0:
        return {"model": model, "backend": backend, "precision": precision,
                "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """The host, as far as it decides speed: CPU model and the vector extensions the backends use."""
    cpu = cpu_info()
    return {"cpu": platform.processor() or platform.machine(), "cpu_model": cpu.model,
            "cpu_features": [f for f in _SPEED_FLAGS if f in cpu.flags], "cores": os.cpu_count(),
            "onednn_max_cpu_isa": onednn_isa_cap(), "bf16_native": native_bf16(cpu, onednn_isa_cap()),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# The extensions that decide fp32 (avx2, avx512f), bf16 (avx512_bf16, amx_bf16) and int8 (vnni, amx_int8) speed.
_SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


if __name__ == "__main__":
    r, m, b, s, f, o, d, p, t, c, sets = json.loads(sys.argv[1])
    print(json.dumps(measure(Path(r), m, b, s, f, o, d, p, t, c, sets)))
