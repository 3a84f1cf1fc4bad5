"""The worker with dynamic batching on: concurrent sessions and both passes share stage calls, every frame is
still published exactly once, and the masks agree with an unbatched in-process run."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np

from service.bench.synthetic_video import moving_ellipses
from service.engine.batching import DynamicBatcher
from service.engine.loader import load_engine
from service.settings import Settings
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client

N = 10
ANCHORS = (3, 6)


async def _session(client: httpx.AsyncClient, frames: list[np.ndarray], mask: np.ndarray, anchor: int) -> np.ndarray:
    r = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})
    sid = r.json()["id"]
    await client.put(f"/v1/sessions/{sid}/masks/{anchor}", files={"mask": ("m.npy", npy_bytes(mask))})
    await client.post(f"/v1/sessions/{sid}/propagate")
    events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
    assert sorted(e["frame"] for e in events if e["event"] == "frame") == list(range(N))  # exactly once
    r = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"})
    return np.load(io.BytesIO(r.content))


def test_concurrent_sessions_batch_and_publish_every_frame_once(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(update={"batch_max_size": 8, "batch_max_delay_ms": 20.0,
                                                    "worker_concurrency": 2})
    frames, masks = moving_ellipses(N, 48, 48, 2)
    assert settings.model_repo is not None
    prop = load_engine(settings.model_repo, "tiny").propagator()
    reference = {a: np.stack([r.labels() for r in sorted(prop.run(frames, masks[a], a), key=lambda r: r.index)])
                 for a in ANCHORS}

    async def scenario() -> tuple[list[np.ndarray], dict[int, int]]:
        async with rest_client(settings) as (client, rt):
            assert rt.worker is not None and isinstance(rt.worker.engine.stages, DynamicBatcher)
            outs = await asyncio.gather(*(_session(client, frames, masks[a], a) for a in ANCHORS))
            return list(outs), dict(rt.worker.engine.stages.batch_sizes)

    outs, sizes = asyncio.run(scenario())
    assert max(sizes) >= 2, sizes  # at least the two passes of a session ran as one batch
    for a, out in zip(ANCHORS, outs):
        assert out.shape == reference[a].shape
        assert (out == reference[a]).mean() > 0.99, a  # float rounding may flip a pixel at a tie, no more


def test_both_passes_share_the_anchor_step_and_match_the_engine(embedded_settings: Settings) -> None:
    """Without batching a session's two passes start from one anchor computation (the engine counts
    N frames, not N + 1) and every mask equals the in-process engine's exactly."""
    frames, masks = moving_ellipses(N, 48, 48, 2)
    assert embedded_settings.model_repo is not None
    prop = load_engine(embedded_settings.model_repo, "tiny").propagator()
    anchor = 4
    reference = np.stack([r.labels() for r in sorted(prop.run(frames, masks[anchor], anchor), key=lambda r: r.index)])

    async def scenario() -> tuple[np.ndarray, str]:
        async with rest_client(embedded_settings) as (client, _):
            out = await _session(client, frames, masks[anchor], anchor)
            return out, (await client.get("/metrics")).text

    out, metrics = asyncio.run(scenario())
    assert np.array_equal(out, reference)
    counts = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
              if line.startswith("imos_frames_processed_total{")}
    assert counts == {"forward": N - anchor, "backward": anchor}, counts
