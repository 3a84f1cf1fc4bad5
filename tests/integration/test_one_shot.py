"""One-shot sessions (REST /v1/segment): the run starts while the frames are still being stored, the
masks equal a batch session's, bad input is refused before anything is stored, and a worker takes
frames appended during its job within that job."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import redis

from service.bench.synthetic_video import moving_ellipses
from service.engine.loader import load_engine
from service.errors import InvalidFrames, InvalidInput, InvalidMask
from service.runtime import Runtime, build_runtime
from service.sessions.codec import encode_labels
from service.sessions.model import RunSpec, SessionMeta
from service.sessions.records import SessionRecords
from service.sessions.service import ONE_SHOT_CHUNK
from service.settings import Settings
from service.store.memory import MemoryStore
from service.worker.passes import CONTINUE, RunContext, advance_run

FRAMES = 2 * ONE_SHOT_CHUNK + 4  # the frames after an early anchor arrive in three appends


async def _labels_when_done(rt: Runtime, sid: str, published: int = FRAMES) -> np.ndarray:
    """Every frame's mask once the run is done; the run must have published frames 0..published-1
    (a backward run publishes none after its anchor)."""
    events = [ev async for ev in rt.sessions.events(sid, "t")]
    assert events[-1].kind == "done", events[-1]
    assert sorted(ev.frame for ev in events if ev.kind == "frame") == list(range(published))  # type: ignore[type-var]
    return np.stack(await rt.sessions.all_labels(sid, "t"))


async def _batch(rt: Runtime, frames: list[np.ndarray], anchor: int, mask: np.ndarray, direction: str) -> np.ndarray:
    meta = await rt.sessions.create("t", frames)
    await rt.sessions.annotate(meta.id, "t", anchor, mask)
    await rt.sessions.propagate(meta.id, "t", direction)
    return await _labels_when_done(rt, meta.id, anchor + 1 if direction == "backward" else FRAMES)


async def _with_worker(settings: Settings, scenario) -> None:  # type: ignore[no-untyped-def]
    rt = build_runtime(settings, "all")
    assert rt.worker is not None
    task = asyncio.create_task(rt.worker.run(rt.stop))
    try:
        await scenario(rt)
    finally:
        rt.stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("anchor,direction", [(3, "both"), (0, "forward"), (FRAMES - 1, "both"), (9, "backward")])
def test_one_shot_masks_equal_a_batch_session(embedded_settings: Settings, anchor: int, direction: str) -> None:
    frames, masks = moving_ellipses(FRAMES, 48, 48, 2)

    async def scenario(rt: Runtime) -> None:
        meta = await rt.sessions.one_shot("t", frames, anchor, masks[anchor], direction)
        got = await _labels_when_done(rt, meta.id, anchor + 1 if direction == "backward" else FRAMES)
        np.testing.assert_array_equal(got, await _batch(rt, frames, anchor, masks[anchor], direction))
        np.testing.assert_array_equal(got[anchor], masks[anchor])
        status = await rt.sessions.status(meta.id, "t")
        assert status["state"] == "done" and status["frames"] == FRAMES and status["stream"] is False

    asyncio.run(_with_worker(embedded_settings, scenario))


def test_one_shot_on_redis(embedded_settings: Settings, redis_url: str, redis_prefix: str) -> None:
    frames, masks = moving_ellipses(FRAMES, 48, 48, 2)
    settings = embedded_settings.model_copy(update={"redis_url": redis_url, "key_prefix": redis_prefix})

    async def scenario(rt: Runtime) -> None:
        meta = await rt.sessions.one_shot("t", frames, 5, masks[5])
        got = await _labels_when_done(rt, meta.id)
        np.testing.assert_array_equal(got, await _batch(rt, frames, 5, masks[5], "both"))
        await rt.sessions.delete(meta.id, "t")
        gone.append(meta.id)

    gone: list[str] = []
    asyncio.run(_with_worker(settings, scenario))
    left = _session_keys(redis_url, redis_prefix)
    assert left and not [k for k in left if gone[0] in k]  # the batch session's parts remain, none of the one-shot's


def test_bad_one_shot_input_stores_nothing(embedded_settings: Settings, redis_url: str, redis_prefix: str) -> None:
    frames, masks = moving_ellipses(6, 48, 48, 1)
    settings = embedded_settings.model_copy(update={"redis_url": redis_url, "key_prefix": redis_prefix})
    odd = frames[:3] + [np.zeros((40, 48), np.uint8)] + frames[4:]
    cases = [
        (dict(frames=frames, frame=6, mask=masks[0]), InvalidInput, "frame 6 is outside the sequence's frames 0..5"),
        (dict(frames=frames, frame=2, mask=np.zeros((48, 48), np.uint8)), InvalidMask, "the mask is empty"),
        (dict(frames=frames, frame=2, mask=masks[2][:20]), InvalidMask, "mask is 20x48 but the frames are 48x48"),
        (dict(frames=odd, frame=1, mask=masks[1]), InvalidFrames, "frame 3 is 40x48 but the sequence is 48x48"),
        (dict(frames=frames, frame=1, mask=masks[1], direction="sideways"), InvalidInput, "direction must be one of"),
    ]

    async def scenario(rt: Runtime) -> None:
        for kwargs, error, message in cases:
            with pytest.raises(error, match=message):
                await rt.sessions.one_shot("t", **kwargs)  # type: ignore[arg-type]

    asyncio.run(_with_worker(settings, scenario))
    assert _session_keys(redis_url, redis_prefix) == []


def _session_keys(redis_url: str, prefix: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return sorted(k.decode() for k in client.scan_iter(f"{prefix}:s:*"))
    finally:
        client.close()


def test_a_job_takes_frames_appended_while_it_runs(embedded_settings: Settings) -> None:
    """A stream with 2 frames when the job starts; each round appends one more. The one job computes
    them all (the worker re-counts when a pass waits) instead of stopping at the frames it first saw."""
    frames, masks = moving_ellipses(FRAMES, 48, 48, 2)

    async def scenario() -> None:
        records = SessionRecords(MemoryStore(), "p", 3600)
        meta = SessionMeta("s", "t", 0.0, 48, 48, "tiny", open=True)
        await records.put_meta(meta)
        for f in frames[:2]:
            await records.append_frame(meta.id, f)
        prop = load_engine(embedded_settings.model_repo, "tiny", "torch").propagator({})
        run = RunSpec(1, "forward", (0,), stream=True)
        ctx = RunContext(meta.id, meta, run, prop, 2, {0: encode_labels(masks[0].astype(np.int64))})

        async def keep_going() -> str:
            have = await records.num_frames(meta.id)
            if have < FRAMES:
                await records.append_frame(meta.id, frames[have])
            return CONTINUE

        finished = await advance_run(records, ctx, 1000, keep_going)
        assert not finished  # the stream is still open
        progress = (await records.progress(meta.id))["forward"]
        assert progress.cursor == FRAMES and progress.published == FRAMES

    asyncio.run(scenario())
