"""Run the REST app in-process (real ASGI stack, real worker task) for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator

import httpx
import numpy as np

from service.gateway.rest.app import create_app
from service.runtime import Runtime, build_runtime
from service.settings import Settings


@contextlib.asynccontextmanager
async def rest_client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    rt = build_runtime(settings, "all")
    assert rt.worker is not None
    task = asyncio.create_task(rt.worker.run(rt.stop))
    transport = httpx.ASGITransport(app=create_app(rt))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://imos.test", timeout=60) as client:
            yield client, rt
    finally:
        rt.stop.set()
        await asyncio.wait_for(task, 10)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def parse_sse(text: str) -> list[dict[str, object]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            events.append({"id": fields.get("id"), "event": fields.get("event"), **json.loads(fields["data"])})
    return events
