"""Every failure of a run ends, visibly, once (issue 20): a frame damaged in the real Redis, a backend
that raises (always, or only at first), a wait past its deadline. Each ends within a bounded time, the
client sees the error with its stable code, and other sessions on the same worker finish normally.

The raising backend wraps the worker's real stages and raises only for the poison session's frames
(told apart by their width): it stands in for an onnxruntime fault or an out-of-memory, the thing
under test being the worker's handling of it, not the backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from typing import Any

import grpc
import httpx
import numpy as np
import redis
import torch

from service.bench.synthetic_video import moving_ellipses
from service.gateway.grpc_server import start_grpc
from service.gateway.protos import load_protos
from service.runtime import Runtime
from service.sessions.codec import encode_frame
from service.settings import Settings
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client

POISON_WIDTH = 80  # the poison session's frames are 48 x 80, the healthy ones 48 x 48
SECRET = "secret-detail-never-shown"
BOUND_S = 30.0  # every failure must be visible well within this


class RaisingStages:
    """The real stages, raising RuntimeError on frames POISON_WIDTH wide, ``times`` times (-1: always)."""

    def __init__(self, inner: Any, times: int = -1, delay_s: float = 0.0) -> None:
        self.inner, self.times, self.delay_s = inner, times, delay_s
        self.name, self.device, self.hidden_dim = inner.name, inner.device, inner.hidden_dim
        self.raised = 0

    def _check(self, image: torch.Tensor) -> None:
        if image.shape[-1] > image.shape[-2]:  # only the wide (poison) frames
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.times < 0 or self.raised < self.times:
                self.raised += 1
                raise RuntimeError(f"backend fault {SECRET}")

    def encode_key(self, image: torch.Tensor) -> Any:
        self._check(image)
        return self.inner.encode_key(image)

    def encode_value(self, *args: Any) -> Any:
        return self.inner.encode_value(*args)

    def segment(self, *args: Any) -> Any:
        return self.inner.segment(*args)


def _install(rt: Runtime, stages: RaisingStages) -> None:
    assert rt.worker is not None
    rt.worker.engine = dataclasses.replace(rt.worker.engine, stages=stages)


def _sequence(width: int) -> tuple[np.ndarray, np.ndarray]:
    frames, masks = moving_ellipses(8, 48, width, 1)
    return np.stack(frames), masks[0]


async def _oneshot(client: httpx.AsyncClient, width: int) -> httpx.Response:
    frames, mask = _sequence(width)
    return await client.post("/v1/segment", files={"sequence": ("s.npy", npy_bytes(frames)),
                                                   "mask": ("m.npy", npy_bytes(mask))},
                             data={"frame": "0", "output": "npy"})


async def _session(client: httpx.AsyncClient, width: int) -> str:
    frames, mask = _sequence(width)
    sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(frames))})).json()["id"]
    r = await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(mask))})
    assert r.status_code == 200, r.text
    return str(sid)


async def _last_event(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
    return events[-1]


def _redis(settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    return settings.model_copy(update={"redis_url": redis_url, "key_prefix": redis_prefix, "lease_ttl_s": 2.0})


def test_a_frame_damaged_in_redis_ends_the_run_and_a_fixed_one_runs_again(
        embedded_settings: Settings, redis_url: str, redis_prefix: str) -> None:
    settings = _redis(embedded_settings, redis_url, redis_prefix)

    async def scenario() -> None:
        async with rest_client(settings) as (client, rt):
            bad, good = await _session(client, 48), await _session(client, 48)
            key = rt.records.key(bad, "frames")
            redis.Redis.from_url(redis_url).hset(key, "4", b"\x00garbage written by a failing disk")
            started = time.monotonic()
            for sid in (bad, good):
                assert (await client.post(f"/v1/sessions/{sid}/propagate")).status_code == 202
            last = await asyncio.wait_for(_last_event(client, bad), BOUND_S)
            assert last["event"] == "error" and last["code"] == "state_error", last
            assert time.monotonic() - started < BOUND_S
            status = (await client.get(f"/v1/sessions/{bad}")).json()
            assert status["state"] == "failed" and status["error"]["code"] == "state_error"
            assert bad not in await rt.records.store.smembers(rt.records.active)
            assert (await _last_event(client, good))["event"] == "done"  # the other session is unharmed
            # After a fix (the frame written again) the session propagates again, to the end.
            frames, _ = _sequence(48)
            await rt.records.store.hset(key, "4", encode_frame(frames[4]))
            assert (await client.post(f"/v1/sessions/{bad}/propagate")).status_code == 202
            assert (await asyncio.wait_for(_last_event(client, bad), BOUND_S))["event"] == "done"
            assert (await client.get(f"/v1/sessions/{bad}")).json()["state"] == "done"

    asyncio.run(scenario())


def test_a_backend_that_always_raises_fails_after_the_attempts_and_others_finish(
        embedded_settings: Settings, redis_url: str, redis_prefix: str) -> None:
    settings = _redis(embedded_settings, redis_url, redis_prefix).model_copy(update={"max_attempts": 3})

    async def scenario() -> None:
        async with rest_client(settings) as (client, rt):
            stages = RaisingStages(rt.worker.engine.stages)  # type: ignore[union-attr]
            _install(rt, stages)
            started = time.monotonic()
            poison, healthy = await asyncio.gather(_oneshot(client, POISON_WIDTH), _oneshot(client, 48))
            assert time.monotonic() - started < BOUND_S
            assert healthy.status_code == 200
            assert poison.status_code == 500, poison.text
            body = poison.json()
            assert body["code"] == "run_failed" and body["failure_code"] == "internal"
            assert "3 times" in body["detail"] and SECRET not in poison.text
            assert body["request_id"] == poison.headers["x-request-id"]
            assert stages.raised == 3  # one per attempt, then the run ended
            metrics = (await client.get("/metrics")).text
            assert 'imos_runs_failed_total{code="internal"} 1.0' in metrics

    asyncio.run(scenario())


def test_a_transient_fault_is_retried_and_the_run_completes(
        embedded_settings: Settings, redis_url: str, redis_prefix: str) -> None:
    settings = _redis(embedded_settings, redis_url, redis_prefix)

    async def scenario() -> None:
        async with rest_client(settings) as (client, rt):
            stages = RaisingStages(rt.worker.engine.stages, times=2)  # type: ignore[union-attr]
            _install(rt, stages)
            r = await asyncio.wait_for(_oneshot(client, POISON_WIDTH), BOUND_S)
            assert r.status_code == 200, r.text
            assert stages.raised == 2
            assert np.load(io.BytesIO(r.content)).shape == (8, 48, POISON_WIDTH)

    asyncio.run(scenario())


def test_grpc_propagate_sees_the_failure_and_the_deadline(embedded_settings: Settings) -> None:
    pb2, pb2_grpc = load_protos()

    async def propagate(rt: Runtime, sid: str) -> grpc.aio.AioRpcError:
        server, port = await start_grpc(rt, "127.0.0.1", 0)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb2_grpc.PropagationStub(channel)
                try:
                    _ = [m async for m in stub.Propagate(pb2.PropagateRequest(session_id=sid))]
                except grpc.aio.AioRpcError as exc:
                    return exc
                raise AssertionError("Propagate should have failed")
        finally:
            await server.stop(0)

    async def scenario(settings: Settings, stages_for: Any) -> grpc.aio.AioRpcError:
        async with rest_client(settings) as (client, rt):
            _install(rt, stages_for(rt.worker.engine.stages))  # type: ignore[union-attr]
            sid = await _session(client, POISON_WIDTH)
            return await asyncio.wait_for(propagate(rt, sid), BOUND_S)

    failed = asyncio.run(scenario(embedded_settings, RaisingStages))
    assert failed.code() == grpc.StatusCode.INTERNAL and "3 times" in failed.details()
    assert dict(failed.trailing_metadata() or ())["imos-error-code"] == "run_failed"
    slow = embedded_settings.model_copy(update={"run_deadline_s": 1.0})
    late = asyncio.run(scenario(slow, lambda s: RaisingStages(s, times=0, delay_s=0.5)))
    assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "1 s" in late.details()


def test_a_one_shot_past_its_deadline_is_a_504(embedded_settings: Settings) -> None:
    slow = embedded_settings.model_copy(update={"run_deadline_s": 1.0})

    async def scenario() -> None:
        async with rest_client(slow) as (client, rt):
            _install(rt, RaisingStages(rt.worker.engine.stages, times=0, delay_s=0.5))  # type: ignore[union-attr]
            r = await asyncio.wait_for(_oneshot(client, POISON_WIDTH), BOUND_S)
            assert r.status_code == 504 and r.json()["code"] == "deadline_exceeded"

    asyncio.run(scenario())
