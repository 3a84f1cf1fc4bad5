"""Readiness and waits know whether a worker is alive (heartbeats in the real Redis): a gateway with no
worker is not ready and its waiting entries fail fast with 503 / UNAVAILABLE instead of hanging; once a
worker runs, both work; when it stops, it leaves."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import numpy as np

from service.bench.synthetic_video import moving_ellipses
from service.gateway.grpc_server import start_grpc
from service.gateway.protos import load_protos
from service.gateway.rest.app import create_app
from service.runtime import build_runtime
from service.settings import Settings
from tests.integration.rest_harness import npy_bytes


def test_no_worker_means_not_ready_and_fast_503s(embedded_settings: Settings, redis_url: str,
                                                   redis_prefix: str) -> None:
    settings = embedded_settings.model_copy(update={"redis_url": redis_url, "key_prefix": redis_prefix,
                                                    "lease_ttl_s": 1.5})
    frames, masks = moving_ellipses(6, 48, 48, 1)
    files = {"sequence": ("s.npy", npy_bytes(np.stack(frames))), "mask": ("m.npy", npy_bytes(masks[0]))}
    pb2, pb2_grpc = load_protos()

    async def scenario() -> None:
        gateway = build_runtime(settings, "gateway")
        transport = httpx.ASGITransport(app=create_app(gateway))
        server, port = await start_grpc(gateway, "127.0.0.1", 0)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as client, \
                grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and "no worker" in ready.json()["checks"]["workers"]
            r = await asyncio.wait_for(client.post("/v1/segment", files=files, data={"frame": "0"}), 5)
            assert r.status_code == 503 and r.json()["code"] == "no_worker" and r.headers["retry-after"]
            sid = (await client.post("/v1/sessions", files={"sequence": files["sequence"]})).json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": files["mask"]})
            stub = pb2_grpc.PropagationStub(channel)
            try:
                _ = [m async for m in stub.Propagate(pb2.PropagateRequest(session_id=sid))]
                raise AssertionError("Propagate should fail fast without a worker")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE and "no worker" in exc.details()
            worker = build_runtime(settings, "worker")
            assert worker.worker is not None
            task = asyncio.create_task(worker.worker.run(worker.stop))
            try:
                for _ in range(100):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                assert (await client.get("/readyz")).status_code == 200
                r = await client.post("/v1/segment", files=files, data={"frame": "0", "output": "npy"})
                assert r.status_code == 200, r.text
            finally:
                worker.stop.set()
                await asyncio.wait_for(task, 20)
            assert (await client.get("/readyz")).status_code == 503  # the stopped worker left at once
        await server.stop(0)
        await gateway.store.close()
        await worker.store.close()

    asyncio.run(scenario())
