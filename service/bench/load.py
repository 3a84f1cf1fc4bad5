"""``imos bench load``: concurrent sessions over REST and gRPC against a running service."""

from __future__ import annotations

import concurrent.futures
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.bench.synthetic_video import moving_ellipses


@dataclass(frozen=True)
class SessionOutcome:
    transport: str
    frames: int
    seconds: float
    first_result_s: float | None
    error: str | None


def _one(index: int, http_url: str, grpc_target: str | None, frames: int, size: int,
         settings: dict[str, str]) -> SessionOutcome:
    """Session i: even ones over REST (sessions + SSE), odd ones over gRPC Track when a target is given."""
    video, masks = moving_ellipses(frames, size, size, 2, seed=index)
    anchor = frames // 2
    transport = "grpc" if grpc_target and index % 2 else "rest"
    first: list[float] = []
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    try:
        if transport == "grpc":
            from service.client import segment_remote

            out = segment_remote(grpc_target or "", video, masks[anchor], anchor, "both", settings, progress)
        else:
            from service.rest_client import RestClient

            client = RestClient(http_url)
            try:
                out = client.segment(video, masks[anchor], anchor, "both", settings, progress)
            finally:
                client.close()
        error = None if len(out) == frames else f"{len(out)} masks for {frames} frames"
    except Exception as exc:  # a load test counts failures instead of stopping at the first
        error = f"{type(exc).__name__}: {exc}"
    return SessionOutcome(transport, frames, time.perf_counter() - started, first[0] if first else None, error)


def run_load(http_url: str, grpc_target: str | None, sessions: int, frames: int, size: int = 64,
             settings: dict[str, str] | None = None) -> dict[str, Any]:
    """All sessions at once; throughput, latency percentiles, errors."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(sessions) as pool:
        outcomes = list(pool.map(lambda i: _one(i, http_url, grpc_target, frames, size, settings or {}),
                                 range(sessions)))
    wall = time.perf_counter() - started
    ok = [o for o in outcomes if o.error is None]
    per_session = sorted(o.seconds for o in ok)
    first = sorted(o.first_result_s for o in ok if o.first_result_s is not None)
    return {
        "sessions": sessions, "frames_per_session": frames, "frame_size": [size, size],
        "errors": [asdict(o) for o in outcomes if o.error is not None],
        "wall_s": round(wall, 3), "frames_per_s": round(sum(o.frames for o in ok) / wall, 2),
        "session_s": _percentiles(per_session), "first_result_s": _percentiles(first),
        "by_transport": {t: sum(1 for o in ok if o.transport == t) for t in ("rest", "grpc")},
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    arr = np.array(values)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p99": round(float(np.percentile(arr, 99)), 3),
            "max": round(float(arr.max()), 3), "mean": round(statistics.fmean(values), 3)}
