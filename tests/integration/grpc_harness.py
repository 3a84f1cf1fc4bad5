"""Run the gRPC server in-process (real grpc.aio server and channel, real worker task) for tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
import numpy as np
from PIL import Image

from service.gateway.grpc_server import start_grpc
from service.gateway.protos import load_protos
from service.runtime import Runtime, build_runtime
from service.settings import Settings


@dataclass
class Served:
    rt: Runtime
    port: int
    channel: grpc.aio.Channel
    pb2: ModuleType
    stub: Any


@contextlib.asynccontextmanager
async def grpc_served(settings: Settings) -> AsyncIterator[Served]:
    """Runtime (role all) + worker task + gRPC server on a free port + a channel to it."""
    rt = build_runtime(settings, "all")
    assert rt.worker is not None
    worker = asyncio.create_task(rt.worker.run(rt.stop))
    server, port = await start_grpc(rt, "127.0.0.1", 0)
    pb2, pb2_grpc = load_protos()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(rt, port, channel, pb2, pb2_grpc.PropagationStub(channel))
    finally:
        await channel.close()
        await server.stop(0)
        rt.stop.set()
        await asyncio.wait_for(worker, 10)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


async def requests_from(messages: Iterable[Any], pause_after: dict[int, asyncio.Event] | None = None,
                        ) -> AsyncIterator[Any]:
    """Yield messages; before message i, wait for pause_after[i] when given (to script a stream)."""
    for i, msg in enumerate(messages):
        if pause_after and i in pause_after:
            await pause_after[i].wait()
        yield msg
