"""A session with per-sequence adaptation (adapt_steps) through REST and the worker on the real Redis:
the masks equal the in-process engine's with the same settings, and the adapted weights are in the store
(where another worker resuming the pass reads them; tests/unit/test_adapt.py checks that resume)."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import redis

from service.bench.synthetic_video import moving_ellipses
from service.engine.loader import load_engine
from service.settings import Settings
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client


def test_adapted_session_matches_the_engine_and_stores_its_weights(embedded_settings: Settings, redis_url: str,
                                                                    redis_prefix: str) -> None:
    settings = embedded_settings.model_copy(update={"redis_url": redis_url, "key_prefix": redis_prefix})
    frames, masks = moving_ellipses(8, 48, 48, 2)
    overrides = {"adapt_steps": "2"}
    engine = load_engine(settings.model_repo, "tiny")  # type: ignore[arg-type]
    expected = {r.index: r.labels() for r in engine.propagator(overrides).run(frames, masks[3], 3)}

    async def scenario() -> None:
        async with rest_client(settings) as (client, rt):
            r = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))},
                                  data={"settings": json.dumps(overrides)})
            sid = r.json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/3", files={"mask": ("m.npy", npy_bytes(masks[3]))})
            assert (await client.post(f"/v1/sessions/{sid}/propagate")).status_code == 202
            events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
            assert events[-1]["event"] == "done", events[-1]
            out = np.load(io.BytesIO((await client.get(f"/v1/sessions/{sid}/masks",
                                                       params={"format": "npy"})).content))
            for t, labels in expected.items():
                assert np.array_equal(out[t], labels), f"frame {t}"
            stored = redis.Redis.from_url(redis_url).hgetall(rt.records.key(sid, "weights"))
            assert len(stored) == 1  # both passes share one adaptation of frame 3
            bad = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))},
                                    data={"settings": json.dumps({"adapt_steps": "-2"})})
            assert bad.status_code == 400 and "adapt_steps" in bad.json()["detail"]

    asyncio.run(scenario())
