"""``imos bench serving``: one sequence through the in-process engine, REST one-shot, REST sessions and
gRPC Track; each served time as a ratio to the in-process time (goal <= 1.10)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from service.bench.synthetic_video import moving_ellipses
from service.engine.loader import load_engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _serve(repo: Path, model: str, http: int, grpc_port: int, backend: str,
           precision: str, store: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "IMOS_MODEL": model, "IMOS_MODEL_REPO": str(repo), "IMOS_LOG_LEVEL": "WARNING",
           "IMOS_BACKEND": backend, "IMOS_PRECISION": precision,
           "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **(store or {})}
    if not store:
        env.pop("IMOS_REDIS_URL", None)  # the in-process store unless --redis says otherwise
    proc = subprocess.Popen([sys.executable, "-m", "service.cli.main", "serve", "--http-port", str(http),
                             "--grpc-port", str(grpc_port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{http}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the service did not become ready")


def measure_serving(repo: Path, model: str, size: int, frames: int, repeats: int = 1, backend: str = "torch",
                    precision: str = "fp32", redis_url: str | None = None) -> dict[str, Any]:
    """The same sequence in-process and through each transport of a served copy, on the same backend;
    the copy keeps sessions in its own memory, or in Redis at ``redis_url`` (under a throwaway key prefix).

    Each repeat runs the in-process engine and then every transport, so a slow spell of a shared machine
    hits both sides of a ratio: ``paired_ratio`` is the median over repeats of served / that repeat's
    in-process time; ``ratio_to_in_process`` compares the fastest of each."""
    video, masks = moving_ellipses(frames, size, size, 1)
    anchor, settings = frames // 2, {"size": "-1"}
    prop = load_engine(repo, model, backend, precision=precision).propagator(settings)
    http, grpc_port = _free_port(), _free_port()
    prefix = f"imosbench-{uuid.uuid4().hex[:10]}"
    store = {"IMOS_REDIS_URL": redis_url, "IMOS_KEY_PREFIX": prefix} if redis_url else None
    proc = _serve(repo, model, http, grpc_port, backend, precision, store)
    inproc: list[float] = []
    served: dict[str, list[float]] = {}
    try:
        clients = _clients(f"http://127.0.0.1:{http}", f"127.0.0.1:{grpc_port}", video, masks[anchor], anchor,
                           settings)
        for _ in range(repeats):
            inproc.append(_timed(lambda: list(prop.run(video, masks[anchor], anchor))))
            for name, fn in clients.items():
                served.setdefault(name, []).append(_timed(fn))
    finally:
        proc.terminate()
        proc.wait(20)
        if redis_url:
            _drop_keys(redis_url, prefix)
    best = min(inproc)
    return {"model": model, "backend": backend, "precision": precision, "size": [size, size], "frames": frames,
            "store": "redis" if redis_url else "in-process", "repeats": repeats,
            "in_process_s": round(best, 3), "in_process_runs_s": [round(t, 3) for t in inproc],
            "served_s": {k: round(min(v), 3) for k, v in served.items()},
            "served_runs_s": {k: [round(t, 3) for t in v] for k, v in served.items()},
            "ratio_to_in_process": {k: round(min(v) / best, 3) for k, v in served.items()},
            "paired_ratio": {k: round(float(np.median([t / i for t, i in zip(v, inproc)])), 3)
                             for k, v in served.items()}}


def _drop_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=500):
            client.delete(key)
    finally:
        client.close()


def _clients(url: str, grpc_target: str, video: list[np.ndarray], mask: np.ndarray, anchor: int,
             settings: dict[str, str]) -> dict[str, Callable[[], Any]]:
    from service.client import segment_remote
    from service.rest_client import RestClient

    # The one-shot's upload is a file the client already has (a DICOM series, a NIfTI, an .npy): it is
    # encoded once, outside the timing. The session clients encode frames as they send them, timed.
    buf, mbuf = io.BytesIO(), io.BytesIO()
    np.save(buf, np.stack(video))
    np.save(mbuf, mask)
    files = {"sequence": ("f.npy", buf.getvalue()), "mask": ("m.npy", mbuf.getvalue())}

    def one_shot() -> None:
        r = httpx.post(f"{url}/v1/segment", files=files,
                       data={"frame": str(anchor), "output": "npy", "settings": '{"size": -1}'}, timeout=600)
        r.raise_for_status()

    def sessions(live: bool) -> None:
        client = RestClient(url)
        try:
            client.segment(video, mask, anchor, "both", settings, live=live)
        finally:
            client.close()

    return {"rest_one_shot": one_shot, "rest_sessions_sse": lambda: sessions(False),
            "rest_sessions_live": lambda: sessions(True),
            "grpc_track": lambda: segment_remote(grpc_target, video, mask, anchor, "both", settings)}
