"""Redis faults: unreachable -> 503 + Retry-After / UNAVAILABLE and not ready, recovery without a
restart; a Redis restarted with AOF persistence keeps open sessions."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis

from service.gateway.grpc_server import start_grpc
from service.gateway.protos import load_protos
from service.settings import Settings
from tests.e2e.procs import free_port
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client


@contextlib.contextmanager
def redis_server(port: int, workdir: Path, aof: bool = False) -> Iterator[None]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
            "--appendonly", "yes" if aof else "no", "--daemonize", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.shutdown(nosave=not aof)
        proc.wait(10)


def test_unreachable_then_recovers_without_restart(embedded_settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    settings = embedded_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    frames = np.zeros((3, 32, 32), np.uint8)

    async def scenario() -> None:
        async with rest_client(settings) as (client, rt):
            r = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(frames))})
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert "store unreachable" in r.json()["detail"]
            assert (await client.get("/readyz")).status_code == 503
            server, gport = await start_grpc(rt, "127.0.0.1", 0)
            pb2, pb2_grpc = load_protos()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gport}") as ch:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await pb2_grpc.PropagationStub(ch).GetSession(pb2.GetSessionRequest(session_id="x"))
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            await server.stop(0)
            with redis_server(port, tmp_path):
                r = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(frames))})
                assert r.status_code == 201
                assert (await client.get("/readyz")).status_code == 200

    asyncio.run(scenario())


def test_aof_restart_keeps_open_sessions(embedded_settings: Settings, tmp_path: Path) -> None:
    from service.bench.synthetic_video import moving_ellipses

    port = free_port()
    settings = embedded_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    frames, masks = moving_ellipses(6, 48, 48, 1)

    async def scenario() -> None:
        with redis_server(port, tmp_path, aof=True):
            async with rest_client(settings) as (client, _):
                sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})).json()["id"]
                assert (await client.put(f"/v1/sessions/{sid}/masks/2", files={"mask": ("m.npy", npy_bytes(masks[2]))})).status_code == 200
        with redis_server(port, tmp_path, aof=True):  # same directory: the AOF is replayed
            async with rest_client(settings) as (client, _):
                status = (await client.get(f"/v1/sessions/{sid}")).json()
                assert status["frames"] == 6 and status["annotated_frames"] == [2]
                assert (await client.post(f"/v1/sessions/{sid}/propagate")).status_code == 202
                events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
                assert sorted(e["frame"] for e in events if e["event"] == "frame") == list(range(6))

    asyncio.run(scenario())
