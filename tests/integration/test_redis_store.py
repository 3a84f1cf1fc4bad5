"""The Redis store against the real Redis server: every primitive, and the REST flow on it."""

from __future__ import annotations

import asyncio

import numpy as np

from service.settings import Settings
from service.store.redis_store import RedisStore
from service.worker.checkpoints import Checkpoints
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client


def test_primitives(redis_url: str, redis_prefix: str) -> None:
    async def scenario() -> None:
        s = RedisStore(redis_url)
        p = redis_prefix
        await s.ping()
        await s.set(f"{p}:k", b"v", ttl_s=5)
        assert await s.get(f"{p}:k") == b"v"
        assert [await s.happend(f"{p}:h", bytes([i])) for i in range(3)] == [0, 1, 2]
        assert await s.hlen(f"{p}:h") == 3 and await s.hget(f"{p}:h", "2") == b"\x02"
        assert await s.lease_acquire(f"{p}:lease", "a", 5) and not await s.lease_acquire(f"{p}:lease", "b", 5)
        assert not await s.lease_refresh(f"{p}:lease", "b", 5) and await s.lease_refresh(f"{p}:lease", "a", 5)
        await s.lease_release(f"{p}:lease", "b")
        assert await s.get(f"{p}:lease") == b"a"
        await s.lease_release(f"{p}:lease", "a")
        assert await s.get(f"{p}:lease") is None
        first = await s.xadd(f"{p}:ev", {"e": b"1"})
        await s.xadd(f"{p}:ev", {"e": b"2"})
        assert [f["e"] for _, f in await s.xread(f"{p}:ev", first, 10)] == [b"2"]
        assert await s.xread(f"{p}:ev", "$", 50) == []
        jid = await s.job_push(f"{p}:jobs", {"session": b"x"})
        got = await s.job_take(f"{p}:jobs", "w1", 100)
        assert got is not None and got[0] == jid
        assert await s.job_take(f"{p}:jobs", "w2", 50) is None
        await asyncio.sleep(0.05)
        assert [j for j, _ in await s.job_reclaim(f"{p}:jobs", "w2", 10)] == [jid]  # w1 died with it
        await s.job_ack(f"{p}:jobs", jid)
        assert await s.queue_depth(f"{p}:jobs") == 0
        await s.expire([f"{p}:h"], 0.05)
        await asyncio.sleep(0.1)
        assert await s.hlen(f"{p}:h") == 0
        await s.close()

    asyncio.run(scenario())


def test_rest_flow_on_redis(embedded_settings: Settings, redis_url: str, redis_prefix: str) -> None:
    from service.bench.synthetic_video import moving_ellipses

    frames, masks = moving_ellipses(8, 48, 48, 1)
    settings = embedded_settings.model_copy(update={"redis_url": redis_url, "key_prefix": redis_prefix})

    async def scenario() -> None:
        async with rest_client(settings) as (client, rt):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})).json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/3", files={"mask": ("m.npy", npy_bytes(masks[3]))})
            await client.post(f"/v1/sessions/{sid}/propagate")
            events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
            assert sorted(e["frame"] for e in events if e["event"] == "frame") == list(range(8))
            state = await Checkpoints(rt.records).state(sid, "forward")
            assert state is not None and state.cursor == 8  # the checkpoint is in Redis
            ttl = await rt.store._r.pttl(rt.records.key(sid, "frames"))  # type: ignore[attr-defined]
            assert 0 < ttl <= settings.session_ttl_s * 1000

    asyncio.run(scenario())


def test_concurrent_session_changes_are_not_lost(embedded_settings: Settings, redis_url: str,
                                                 redis_prefix: str) -> None:
    """Annotations racing each other and the stream's close on real Redis: every annotation ends
    up in the final run (meta read-modify-write is serialised by the session's meta lock)."""
    from service.bench.synthetic_video import moving_ellipses
    from service.sessions.records import SessionRecords
    from service.sessions.service import SessionService

    frames, masks = moving_ellipses(12, 32, 32, 1)

    async def scenario() -> None:
        store = RedisStore(redis_url)
        records = SessionRecords(store, redis_prefix, 60)
        service = SessionService(records, embedded_settings, "tiny", 4)
        meta = await service.create("t", frames, stream=True)
        await asyncio.gather(*(service.annotate(meta.id, "t", i, masks[i]) for i in range(8)))
        final = await records.meta(meta.id)
        assert final.run is not None and final.run.anchors == tuple(range(8)) and final.run.id == 8
        lock = records.meta_lock(meta.id)
        async with lock:  # a held lock makes the next writer wait, then it proceeds
            waiter = asyncio.create_task(service.close_stream(meta.id, "t"))
            await asyncio.sleep(0.05)
            assert not waiter.done()
        await waiter
        closed = await records.meta(meta.id)
        assert not closed.open and closed.run is not None and closed.run.num_frames == 12
        await records.delete(meta.id)
        await store.close()

    asyncio.run(scenario())
