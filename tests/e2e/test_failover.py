"""Worker failover on real Redis: SIGKILL the worker holding a session mid-propagation; another takes
it from its last checkpoint. The client sees every frame exactly once and the masks equal an
uninterrupted run. Five kills at five different frames; then a SIGTERM drain."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import redis

from service.bench.synthetic_video import moving_ellipses
from service.engine.loader import load_engine
from tests.e2e.procs import free_port, imos_process, wait_ready

N, ANCHOR, SIZE = 48, 24, "448"


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _start_session(c: httpx.Client, frames: list[np.ndarray], mask: np.ndarray) -> str:
    sid = c.post("/v1/sessions", files={"sequence": ("f.npy", _npy(np.stack(frames)))},
                 data={"settings": json.dumps({"size": SIZE})}).json()["id"]
    c.put(f"/v1/sessions/{sid}/masks/{ANCHOR}", files={"mask": ("m.npy", _npy(mask))}).raise_for_status()
    c.post(f"/v1/sessions/{sid}/propagate").raise_for_status()
    return sid


def _holder(r: redis.Redis, prefix: str, sid: str, timeout_s: float = 10) -> bytes:
    """The session's lease value (its worker's id and pid) once a worker holds it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owner = r.get(f"{prefix}:s:{sid}:lease")
        if owner:
            return owner if isinstance(owner, bytes) else owner.encode()
        time.sleep(0.01)
    raise AssertionError("no worker took the session")


def _pid(owner: bytes) -> int:
    """The worker's pid in a lease value."""
    return int(owner.decode().split("-")[-2])


def _holder_pid(r: redis.Redis, prefix: str, sid: str, timeout_s: float = 10) -> int:
    return _pid(_holder(r, prefix, sid, timeout_s))


def _wait_attempt(r: redis.Redis, prefix: str, sid: str, count: int, timeout_s: float = 60) -> None:
    """Until the store has counted attempt ``count`` of the session's run (worker/attempts.py)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = r.get(f"{prefix}:s:{sid}:attempts")
        if raw and json.loads(raw)["count"] == count:
            return
        time.sleep(0.005)
    raise AssertionError(f"attempt {count} was never counted")


def _follow(c: httpx.Client, sid: str, kill_at: int | None, on_kill) -> list[int]:  # type: ignore[no-untyped-def]
    frames: list[int] = []
    with c.stream("GET", f"/v1/sessions/{sid}/events") as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                if ev["kind"] == "frame":
                    frames.append(ev["frame"])
                    if kill_at is not None and len(frames) == kill_at:
                        on_kill()
    return frames


def _env(tiny_repo: Path, redis_url: str, redis_prefix: str, **extra: str) -> dict[str, str]:
    return {"IMOS_MODEL": "tiny", "IMOS_MODEL_REPO": str(tiny_repo), "IMOS_REDIS_URL": redis_url,
            "IMOS_KEY_PREFIX": redis_prefix, "IMOS_WORKER_CONCURRENCY": "1", "IMOS_LEASE_TTL_S": "1.5",
            "IMOS_LOG_JSON": "true", **extra}


class Cluster:
    """`imos gateway` and `imos worker`s (spawned on demand) on the real Redis, stopped with ``stack``."""

    def __init__(self, stack: ExitStack, env: dict[str, str], logs: Path) -> None:
        self.stack, self.env, self.logs = stack, env, logs
        http = free_port()
        self.url = f"http://127.0.0.1:{http}"
        self.gateway = stack.enter_context(imos_process(["gateway", "--http-port", str(http), "--grpc-port",
                                                         str(free_port())], env, logs / "gw.log"))
        self.workers: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> None:
        self.workers.append(self.stack.enter_context(imos_process(["worker"], self.env,
                                                                  self.logs / f"w{len(self.workers)}.log")))

    def ready(self) -> None:
        wait_ready(self.url, self.gateway, self.logs / "gw.log")
        time.sleep(2.0)  # workers load the model


@contextlib.contextmanager
def running(env: dict[str, str], logs: Path, workers: int = 2) -> Iterator[Cluster]:
    """A gateway and ``workers`` workers, ready."""
    with ExitStack() as stack:
        cluster = Cluster(stack, env, logs)
        for _ in range(workers):
            cluster.spawn()
        cluster.ready()
        yield cluster


def test_sigkill_failover_at_five_frames_then_sigterm_drain(tiny_repo: Path, redis_url: str, redis_prefix: str,
                                                            tmp_path: Path) -> None:
    frames, masks = moving_ellipses(N, 64, 64, 2)
    reference = {r.index: r.labels() for r in
                 load_engine(tiny_repo, "tiny").propagator({"size": SIZE}).run(frames, masks[ANCHOR], ANCHOR)}
    env = _env(tiny_repo, redis_url, redis_prefix, IMOS_CHECKPOINT_EVERY="4")
    r = redis.Redis.from_url(redis_url)
    with running(env, tmp_path) as cluster:
        workers, spawn, url = cluster.workers, cluster.spawn, cluster.url
        with httpx.Client(base_url=url, timeout=120) as c:
            for kill_at in (2, 9, 17, 26, 40):
                sid = _start_session(c, frames, masks[ANCHOR])
                pid = _holder_pid(r, redis_prefix, sid)

                def kill(pid: int = pid) -> None:
                    os.kill(pid, signal.SIGKILL)
                    spawn()

                got = _follow(c, sid, kill_at, kill)
                assert sorted(got) == list(range(N)), f"kill at {kill_at}: {len(got)} events"  # exactly once
                out = np.load(io.BytesIO(c.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"}).content))
                for t in range(N):
                    assert np.array_equal(out[t], reference[t]), f"kill at {kill_at}: frame {t} differs"
            # SIGTERM: the worker saves its passes within a frame, releases the lease and exits
            sid = _start_session(c, frames, masks[ANCHOR])
            pid = _holder_pid(r, redis_prefix, sid)
            got = _follow(c, sid, 12, lambda: os.kill(pid, signal.SIGTERM))
            assert sorted(got) == list(range(N))
            holder = next(w for w in workers if w.pid == pid)
            assert holder.wait(20) == 0


def test_a_session_that_kills_every_worker_ends_as_failed(tiny_repo: Path, redis_url: str, redis_prefix: str,
                                                         tmp_path: Path) -> None:
    """A poison session: every worker that takes it dies (SIGKILL as soon as it holds the lease, before
    any progress). After IMOS_MAX_ATTEMPTS attempts the next worker ends the run as failed
    (worker_lost) instead of dying too; a healthy session on the same workers finishes normally."""
    frames, masks = moving_ellipses(N, 64, 64, 2)
    env = _env(tiny_repo, redis_url, redis_prefix, IMOS_CHECKPOINT_EVERY="1000", IMOS_MAX_ATTEMPTS="3")
    r = redis.Redis.from_url(redis_url)
    with running(env, tmp_path) as cluster:
        workers, spawn, url = cluster.workers, cluster.spawn, cluster.url
        with httpx.Client(base_url=url, timeout=120) as c:
            # a long sequence: an attempt must outlast the moment between a worker taking the lease and
            # this test killing it, even on a loaded machine
            long_frames, long_masks = moving_ellipses(8 * N, 64, 64, 2)
            poison = _start_session(c, long_frames, long_masks[ANCHOR])
            started = time.monotonic()
            for attempt in (1, 2, 3):
                # a respawned worker imports torch and loads the model first: slow on a busy 2-core machine
                dead = _holder(r, redis_prefix, poison, timeout_s=150)
                pid = _pid(dead)
                _wait_attempt(r, redis_prefix, poison, attempt)  # a crash comes after the attempt began
                os.kill(pid, signal.SIGKILL)
                next(w for w in workers if w.pid == pid).wait(10)
                spawn()
                # the dead worker's lease lapses; another worker may take the session between two looks,
                # so wait for the dead one's lease to go, not for no lease at all
                while r.get(f"{redis_prefix}:s:{poison}:lease") == dead:
                    time.sleep(0.05)
            healthy = _start_session(c, frames, masks[ANCHOR])
            with c.stream("GET", f"/v1/sessions/{poison}/events") as resp:
                last = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")][-1]
            assert last["kind"] == "error" and last["code"] == "worker_lost", last
            assert time.monotonic() - started < 60
            status = c.get(f"/v1/sessions/{poison}").json()
            assert status["state"] == "failed" and status["error"]["attempts"] == 3
            assert sorted(_follow(c, healthy, None, None)) == list(range(N))
            assert c.get(f"/v1/sessions/{healthy}").json()["state"] == "done"
            assert sum(w.poll() is None for w in workers) == 2  # the last workers are alive
