"""`imos gateway` (without torch) + two `imos worker`s on one host sharing the real Redis: sessions spread
over both workers."""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np

from service.bench.synthetic_video import moving_ellipses
from tests.e2e.procs import ROOT, free_port, imos_process, wait_ready


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


DEV_SEQS = ["hippocampus__003", "hippocampus__017", "hippocampus__019", "hippocampus__025"]


def _sequence(i: int) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """A real dev sequence when ../shared is present, else a generated one."""
    from service.io.images import read_frames, read_mask
    from tests.conftest import DATA_DEV

    seq = DATA_DEV / "JPEGImages" / DEV_SEQS[i]
    if seq.is_dir():
        frames = read_frames(seq)
        mid = len(frames) // 2
        return frames, {mid: read_mask(DATA_DEV / "Annotations" / DEV_SEQS[i] / f"{mid:05d}.png")}
    frames, masks = moving_ellipses(16, 64, 64, 2, seed=i)
    return frames, {8: masks[8]}


def _one_session(url: str, i: int) -> tuple[int, int, list[int]]:
    frames, given = _sequence(i)
    (mid, mask), = given.items()
    with httpx.Client(base_url=url, timeout=120) as c:
        sid = c.post("/v1/sessions", files={"sequence": ("f.npy", _npy(np.stack(frames)))}).json()["id"]
        c.put(f"/v1/sessions/{sid}/masks/{mid}", files={"mask": ("m.npy", _npy(mask))}).raise_for_status()
        c.post(f"/v1/sessions/{sid}/propagate").raise_for_status()
        got = []
        with c.stream("GET", f"/v1/sessions/{sid}/events") as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    ev = json.loads(line[6:])
                    if ev["kind"] == "frame":
                        got.append(ev["frame"])
        out = np.load(io.BytesIO(c.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"}).content))
        assert np.array_equal(out[mid], mask)
        return len(frames), len(out), got


def _probe_url(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> str:
    """The probe URL a started worker prints: `imos worker: probes http://HOST:PORT ...`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"imos worker: probes (http://\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"worker exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"worker printed no probe URL:\n{log.read_text()[-3000:]}")


def test_gateway_and_two_workers(tiny_repo: Path, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    http = free_port()
    env = {"IMOS_MODEL": "tiny", "IMOS_MODEL_REPO": str(tiny_repo), "IMOS_REDIS_URL": redis_url,
           "IMOS_KEY_PREFIX": redis_prefix, "IMOS_WORKER_CONCURRENCY": "1", "IMOS_LOG_JSON": "true"}
    logs = [tmp_path / f"{name}.log" for name in ("gateway", "worker1", "worker2")]
    gateway = ["gateway", "--http-port", str(http), "--grpc-port", str(free_port())]
    # The gateway owns no model: it runs where torch and ONNX Runtime cannot even be imported (the slim image).
    (tmp_path / "no_torch").mkdir()
    (tmp_path / "no_torch" / "sitecustomize.py").write_text(
        "import sys\nfor name in ('torch', 'onnx', 'onnxruntime'):\n    sys.modules[name] = None\n")
    gateway_env = {**env, "PYTHONPATH": f"{tmp_path / 'no_torch'}{os.pathsep}{ROOT}"}
    # The README's commands: `imos worker &` twice on one host, no port flags; each worker's probes
    # take a free port and the worker prints it.
    with imos_process(gateway, gateway_env, logs[0]) as gw, \
            imos_process(["worker"], env, logs[1]) as w1, imos_process(["worker"], env, logs[2]) as w2:
        url = f"http://127.0.0.1:{http}"
        wait_ready(url, gw, logs[0])
        probes = [_probe_url(w, log) for w, log in ((w1, logs[1]), (w2, logs[2]))]
        assert probes[0] != probes[1]
        for w, log, probe in zip((w1, w2), logs[1:], probes):
            wait_ready(probe, w, log)  # the worker's own probes
        assert httpx.post(f"{probes[0]}/v1/segment").status_code == 404  # no client routes
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda s: _one_session(url, s), range(4)))
    for n, n_out, frames in results:
        assert n_out == n and sorted(frames) == list(range(n))  # every frame exactly once
    finished = [[json.loads(line) for line in log.read_text().splitlines() if '"run finished"' in line]
                for log in logs[1:]]
    assert sum(len(f) for f in finished) == 4
    assert all(len(f) >= 1 for f in finished), "both workers should have taken sessions"
    gateway_ids = {json.loads(line).get("request_id") for line in logs[0].read_text().splitlines()
                   if '"route": "/v1/sessions/{sid}/propagate"' in line}
    worker_ids = {f.get("request_id") for fs in finished for f in fs}
    assert worker_ids and worker_ids <= gateway_ids  # the request id travels from gateway to worker
