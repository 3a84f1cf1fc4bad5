"""A pass's checkpoint chain in the store (full record + deltas), on the real Redis and the in-memory store,
and the worker writing deltas between consolidations."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.engine import state_codec, state_delta
from service.engine.propagate import Propagator
from service.engine.state import PassState
from service.engine.state_delta import Chain
from service.errors import StateError, TooLarge
from service.sessions.records import SessionRecords
from service.settings import Settings
from service.store.base import Store
from service.store.memory import MemoryStore
from service.store.redis_store import RedisStore
from service.worker.checkpoints import MAX_DELTAS, Checkpoints
from tests.conftest import moving_sequence
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return RedisStore(request.getfixturevalue("redis_url"))


@pytest.fixture()
def prefix(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("redis_prefix") if "redis" in request.node.callspec.id else "mem"


def _states(prop: Propagator, n: int) -> list[PassState]:
    video, mask = moving_sequence(n, 48, 2)
    st, _ = prop.start(video[0], mask, 0, "forward", n)
    out = [st]
    while not st.finished:
        st, _ = prop.advance(st, video[st.cursor])
        out.append(st)
    return out


async def _start_chain(records: SessionRecords, base: PassState) -> Chain:
    """Store ``base`` as the full record of a new chain of the forward pass."""
    token = state_delta.new_token()
    await Checkpoints(records).put_state_data("s", "forward", state_codec.encode(base, chain=token))
    return Chain.describe(base, token, 0)


def _same(a: PassState, b: PassState) -> bool:
    ta, tb = state_codec.state_tensors(a), state_codec.state_tensors(b)
    return set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta) and a.cursor == b.cursor


def test_hupdate_and_hmget(store: Store, prefix: str) -> None:
    async def scenario() -> None:
        key = f"{prefix}:h"
        await store.hupdate(key, {"a": b"1", "b": b"2", "c": b"3"})
        await store.hupdate(key, {"d": b"4"}, drop=["a", "c", "missing"])
        assert await store.hmget(key, ["a", "b", "c", "d", "e"]) == [None, b"2", None, b"4", None]
        assert await store.hlen(key) == 2 and await store.hmget(key, []) == []
        await store.close()

    asyncio.run(scenario())


def test_a_chain_in_the_store_restores_and_a_full_record_drops_its_deltas(store: Store, prefix: str,
                                                                          tiny_propagator: Propagator) -> None:
    states = _states(tiny_propagator, 4)
    records = SessionRecords(store, prefix, 60)
    assert states[3].core.memory.work.epoch == states[1].core.memory.work.epoch

    async def scenario() -> None:
        chain = await _start_chain(records, states[1])
        assert _same(await Checkpoints(records).state("s", "forward"), states[1])  # type: ignore[arg-type]
        for seq, st in ((1, states[2]), (2, states[3])):
            delta = state_delta.encode_delta(st, chain)
            assert delta is not None
            await Checkpoints(records).put_state_delta("s", "forward", seq, delta, state_codec.payload_bytes(st))
            chain = Chain.describe(st, chain.token, seq)
            assert _same(await Checkpoints(records).state("s", "forward"), st)  # type: ignore[arg-type]
        assert await store.hlen(records.key("s", "state")) == 4  # full, count, 2 deltas
        restored = await Checkpoints(records).checkpoint("s", "forward")  # a resumed pass goes on with the same chain
        assert restored is not None and _same(restored[0], states[3])
        assert restored[1] is not None and (restored[1].token, restored[1].seq) == (chain.token, 2)
        await Checkpoints(records).put_state_data("s", "forward", state_codec.encode(states[0]))
        assert await store.hlen(records.key("s", "state")) == 2
        assert _same(await Checkpoints(records).state("s", "forward"), states[0])  # type: ignore[arg-type]
        assert await Checkpoints(records).state("s", "backward") is None
        await store.close()

    asyncio.run(scenario())


def test_a_chain_missing_a_delta_or_over_the_limit_is_refused(store: Store, prefix: str,
                                                              tiny_propagator: Propagator) -> None:
    states = _states(tiny_propagator, 3)
    records = SessionRecords(store, prefix, 60)

    async def scenario() -> None:
        delta = state_delta.encode_delta(states[2], await _start_chain(records, states[1]))
        assert delta is not None
        whole = state_codec.payload_bytes(states[2])
        with pytest.raises(TooLarge, match="IMOS_MAX_STATE_BYTES"):
            await Checkpoints(records).put_state_delta("s", "forward", 1, delta, whole, limit=whole - 1)
        with pytest.raises(ValueError):
            await Checkpoints(records).put_state_delta("s", "forward", MAX_DELTAS + 1, delta, whole)
        await store.hset(records.key("s", "state"), "forward#n", b"2")  # says two deltas, holds none
        with pytest.raises(StateError, match="misses deltas"):
            await Checkpoints(records).state("s", "forward")
        await store.hset(records.key("s", "state"), "forward#n", b"two")
        with pytest.raises(StateError, match="unreadable delta count"):
            await Checkpoints(records).state("s", "forward")
        await store.close()

    asyncio.run(scenario())


def test_the_worker_writes_deltas_and_its_masks_do_not_change(embedded_settings: Settings, redis_url: str,
                                                              redis_prefix: str) -> None:
    """checkpoint_every=1 on Redis: deltas between consolidations, and the same masks as in-process."""
    from service.engine.loader import load_engine

    frames, mask = moving_sequence(24, 48, 2)
    settings = embedded_settings.model_copy(update={"redis_url": redis_url, "key_prefix": redis_prefix,
                                                    "checkpoint_every": 1})
    expected = {r.index: r.labels() for r in load_engine(settings.model_repo, "tiny").propagator().run(
        frames, mask, 0)}

    async def scenario() -> tuple[str, dict[int, np.ndarray]]:
        async with rest_client(settings) as (client, _):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))}
                                     )).json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(mask))})
            await client.post(f"/v1/sessions/{sid}/propagate", json={"direction": "forward"})
            events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
            assert events[-1]["event"] == "done"
            got = {}
            for t in range(len(frames)):
                r = await client.get(f"/v1/sessions/{sid}/masks/{t}")
                got[t] = np.asarray(Image.open(io.BytesIO(r.content)))
            return (await client.get("/metrics")).text, got

    metrics, got = asyncio.run(scenario())
    assert 'imos_state_written_bytes_total{kind="delta"}' in metrics
    assert 'imos_state_written_bytes_total{kind="full"}' in metrics
    assert all(np.array_equal(got[t], expected[t]) for t in expected)


def test_each_job_of_a_live_stream_extends_the_chain_with_a_delta(store: Store, prefix: str,
                                                                   tiny_repo: Path) -> None:
    """A stream whose frames arrive between jobs: the first job's checkpoint is a full record, each later
    job resumes the chain and ends with a delta (memory only grew), and the masks equal one run's."""
    from service.engine.loader import load_engine
    from service.sessions.codec import decode_labels, encode_labels
    from service.sessions.model import RunSpec, SessionMeta
    from service.worker.passes import CONTINUE, RunContext, advance_run

    frames, mask = moving_sequence(12, 48, 2)
    prop = load_engine(tiny_repo, "tiny").propagator()
    expected = {r.index: r.labels() for r in prop.run(frames, mask, 0)}

    async def keep_going() -> str:
        return CONTINUE

    async def scenario() -> list[bytes | None]:
        records = SessionRecords(store, prefix, 3600)
        meta = SessionMeta("s", "t", 0.0, 48, 48, "tiny", open=True)
        await records.put_meta(meta)
        run, counts = RunSpec(1, "forward", (0,), stream=True), []
        for part in (frames[:4], frames[4:8], frames[8:]):
            for f in part:
                await records.append_frame("s", f)
            ctx = RunContext("s", meta, run, prop, await records.num_frames("s"),
                             {0: encode_labels(mask.astype(np.int64))})
            assert not await advance_run(records, ctx, 1000, keep_going)  # the stream stays open
            counts.append(await store.hget(records.key("s", "state"), "forward#n"))
        for t, labels in expected.items():
            got = await records.result("s", t)
            assert got is not None and np.array_equal(decode_labels(got[1]), labels), t
        await store.close()
        return counts

    assert asyncio.run(scenario()) == [b"0", b"1", b"2"]


def test_an_unreadable_checkpoint_recomputes_the_pass_from_its_anchor(store: Store, prefix: str,
                                                                      tiny_repo: Path) -> None:
    """A checkpoint this build cannot read (a newer version after a rolling upgrade, or damage): the next
    job starts the pass again from its anchor, its masks are the same, and no frame is announced twice."""
    import struct

    from service.engine.loader import load_engine
    from service.sessions.codec import decode_labels, encode_labels
    from service.sessions.model import RunSpec, SessionMeta
    from service.worker.passes import CONTINUE, RunContext, advance_run

    frames, mask = moving_sequence(10, 48, 2)
    prop = load_engine(tiny_repo, "tiny").propagator()
    expected = {r.index: r.labels() for r in prop.run(frames, mask, 0)}

    async def keep_going() -> str:
        return CONTINUE

    async def scenario() -> None:
        records = SessionRecords(store, prefix, 3600)
        meta = SessionMeta("s", "t", 0.0, 48, 48, "tiny", open=True)
        await records.put_meta(meta)
        run = RunSpec(1, "forward", (0,), stream=True)
        for job, part in enumerate((frames[:5], frames[5:])):
            for f in part:
                await records.append_frame("s", f)
            ctx = RunContext("s", meta, run, prop, await records.num_frames("s"),
                             {0: encode_labels(mask.astype(np.int64))})
            await advance_run(records, ctx, 1000, keep_going)
            if job == 0:  # as if a newer build had written it
                newer = state_codec.MAGIC + struct.pack("<HI", 99, 2) + b"{}"
                await store.hset(records.key("s", "state"), "forward", newer)
        events = await records.events("s", "0", 0)
        announced = sorted(e.frame for e in events if e.kind == "frame")
        assert announced == list(range(10))  # once each, though frames 0-4 were computed twice
        for t, labels in expected.items():
            got = await records.result("s", t)
            assert got is not None and np.array_equal(decode_labels(got[1]), labels), t
        state, _ = await Checkpoints(records).checkpoint("s", "forward") or (None, None)
        assert state is not None and state.cursor == 10  # the recomputed pass left a readable checkpoint
        await store.close()

    asyncio.run(scenario())
