"""``imos bench batching``: aggregate frames/s of 1, 2, 4, 8 concurrent sessions, with and without the
DynamicBatcher, in-process (each session annotated mid-sequence and propagated both ways, as the worker does)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from service.bench.synthetic_video import moving_ellipses
from service.engine.backends.base import Stages
from service.engine.batching import BatchConfig, DynamicBatcher
from service.engine.loader import Engine, load_engine
from service.engine.propagate import Propagator


def _sessions(count: int, frames: int, size: int, objects: int) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """Distinct synthetic sequences (one seed each) and the mask of their middle frame."""
    out = []
    for seed in range(count):
        video, masks = moving_ellipses(frames, size, size, objects, seed)
        out.append((video, masks[frames // 2]))
    return out


def _run_concurrently(prop: Propagator, sessions: list[tuple[list[np.ndarray], np.ndarray]]) -> float:
    """Seconds for every session to propagate both ways, each in its own thread, started together."""
    gate = threading.Barrier(len(sessions) + 1)

    def one(video: list[np.ndarray], mask: np.ndarray) -> int:
        gate.wait()
        return sum(1 for _ in prop.run(video, mask, len(video) // 2, "both"))

    with ThreadPoolExecutor(len(sessions)) as pool:
        futures = [pool.submit(one, video, mask) for video, mask in sessions]
        gate.wait()
        started = time.perf_counter()
        done = [f.result() for f in futures]
        seconds = time.perf_counter() - started
    assert done == [len(v) for v, _ in sessions]
    return seconds


def _point(engine: Engine, stages: Stages, count: int, frames: int, size: int, objects: int) -> float:
    """Aggregate frames/s of ``count`` concurrent sessions on ``stages``, after a short warm-up run that
    builds the kernels of each batch shape."""
    prop = Propagator(stages, engine.propagator({"size": -1}).config, engine.model_id, engine.entry.spec.max_objects)
    _run_concurrently(prop, _sessions(count, min(frames, 4), size, objects))
    if isinstance(stages, DynamicBatcher):
        stages.batch_sizes.clear()  # report the timed run's batches only
    seconds = _run_concurrently(prop, _sessions(count, frames, size, objects))
    return count * frames / seconds


def sessions_curve(engine: Engine, size: int, frames: int, sessions: tuple[int, ...] = (1, 2, 4, 8),
                   objects: int = 1, config: BatchConfig = BatchConfig()) -> list[dict[str, Any]]:
    """For each session count: frames/s without and with batching, their ratio and the batch sizes seen."""
    curve = []
    for count in sessions:
        plain = _point(engine, engine.stages, count, frames, size, objects)
        with DynamicBatcher(engine.stages, config) as batcher:
            fast = _point(engine, batcher, count, frames, size, objects)
            sizes = dict(sorted(batcher.batch_sizes.items()))
        calls = sum(sizes.values())
        curve.append({"sessions": count, "unbatched_frames_per_s": round(plain, 2),
                      "batched_frames_per_s": round(fast, 2), "ratio": round(fast / plain, 3),
                      "mean_batch": round(sum(k * v for k, v in sizes.items()) / calls, 2) if calls else None,
                      "batch_sizes": {str(k): v for k, v in sizes.items()}})
    return curve


def measure_batching(repo: Path, model: str, size: int, frames: int, sessions: tuple[int, ...], objects: int,
                     backend: str, device: str, precision: str, config: BatchConfig) -> dict[str, Any]:
    engine = load_engine(repo, model, backend, device, precision, max_batch=config.max_batch)
    curve = sessions_curve(engine, size, frames, sessions, objects, config)
    return {"model": engine.model_id, "backend": engine.stages.name, "device": device, "precision": precision,
            "size": [size, size],
            "frames_per_session": frames, "objects": objects, "max_batch": config.max_batch,
            "max_delay_ms": config.max_delay_ms, "curve": curve,
            "ratio_by_sessions": {str(p["sessions"]): p["ratio"] for p in curve}}
