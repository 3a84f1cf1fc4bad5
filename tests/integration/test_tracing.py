"""Optional OpenTelemetry tracing: off by default; on, one trace spans the REST request and the worker run."""

from __future__ import annotations

import asyncio

import numpy as np
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.runtime import build_runtime
from service.settings import Settings
from service.tracing import setup_tracing
from tests.integration.rest_harness import npy_bytes, parse_sse


def test_tracing_off_by_default(embedded_settings: Settings) -> None:
    assert not build_runtime(embedded_settings, "all").tracing.enabled


def test_request_and_worker_run_share_a_trace(embedded_settings: Settings) -> None:
    import httpx

    from service.bench.synthetic_video import moving_ellipses
    from service.gateway.rest.app import create_app

    exporter = InMemorySpanExporter()
    frames, masks = moving_ellipses(4, 48, 48, 1)

    async def scenario() -> None:
        rt = build_runtime(embedded_settings, "all", tracing=setup_tracing(None, "imos-test", exporter))
        assert rt.worker is not None
        task = asyncio.create_task(rt.worker.run(rt.stop))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(rt)), base_url="http://t") as c:
            sid = (await c.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})).json()["id"]
            await c.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(masks[0]))})
            await c.post(f"/v1/sessions/{sid}/propagate")
            assert len(parse_sse((await c.get(f"/v1/sessions/{sid}/events")).text)) >= 4
        rt.stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    spans = exporter.get_finished_spans()
    worker = [s for s in spans if s.name == "worker.process"]
    assert worker, [s.name for s in spans]
    requests = {s.context.trace_id for s in spans if s.name.startswith("POST")}
    assert worker[0].context.trace_id in requests  # the run joined the trace of the propagate request
    assert all("pixel" not in str(s.attributes) for s in spans)
