"""Advancing one run of one session: both passes, frame by frame, with checkpoints."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from service.engine import state_codec, state_delta
from service.engine.propagate import FrameResult, Propagator
from service.engine.scheduler import PassScheduler, PassSlot, Round
from service.engine.state import PassState
from service.engine.state_delta import Chain
from service.errors import StateError
from service.metrics import Metrics
from service.sessions.codec import decode_labels, encode_labels
from service.sessions.model import Event, PassProgress, RunSpec, SessionMeta
from service.sessions.records import SessionRecords
from service.worker.checkpoints import MAX_DELTAS, Checkpoints

log = logging.getLogger("imos.worker")


@dataclass
class PassCursor(PassSlot):
    """A pass in flight (engine.scheduler.PassSlot) with the frames it has published and its checkpoints."""

    published: int = 0
    since_checkpoint: int = 0
    chain: Chain | None = None  # this pass's last checkpoint in the store, which a delta may extend


@dataclass
class RunContext:
    sid: str
    meta: SessionMeta
    run: RunSpec
    prop: Propagator
    available: int
    annotations: dict[int, bytes] = field(default_factory=dict)
    metrics: Metrics | None = None
    max_state_bytes: int | None = None
    executor: Executor | None = None  # engine threads (None: asyncio's default pool)
    state_fp16: bool = False  # checkpoints in fp16 (settings.state_fp16)


async def compute_pass(records: SessionRecords, ctx: RunContext, cur: PassSlot,
                       t: int) -> tuple[PassState, FrameResult]:
    """Process frame t, the next of one pass (the engine runs in a thread): (next state, result).
    ``cur`` is not touched, so two passes can compute at once and commit one after the other."""
    frame = await records.frame(ctx.sid, t)
    mask = _annotation(ctx, t)
    started = time.perf_counter()
    if cur.state is None:
        assert mask is not None
        state, res = await _in_thread(ctx, ctx.prop.start, frame, mask, t, cur.direction, ctx.run.num_frames)
        await _keep_weights(records, ctx, state)
    else:
        await _load_weights(records, ctx, cur.state)
        state, res = await _in_thread(ctx, ctx.prop.advance, cur.state, frame, mask)
    if ctx.metrics is not None:
        ctx.metrics.frames.labels(cur.direction).inc()
        ctx.metrics.frame_seconds.observe(time.perf_counter() - started)
    return state, res


async def _keep_weights(records: SessionRecords, ctx: RunContext, state: PassState) -> None:
    """A pass that adapted its weights stores them, so that any worker can resume it."""
    if state.weights and ctx.prop.adapter is not None and await records.weights(ctx.sid, state.weights) is None:
        blob = await _in_thread(ctx, ctx.prop.adapter.export, state.weights)
        await records.put_weights(ctx.sid, state.weights, blob)


async def _load_weights(records: SessionRecords, ctx: RunContext, state: PassState) -> None:
    """A resumed pass on adapted weights this worker does not hold: load them from the store."""
    adapter = ctx.prop.adapter
    if not state.weights or adapter is None or adapter.has(state.weights):
        return
    blob = await records.weights(ctx.sid, state.weights)
    if blob is None:
        raise StateError("the adapted weights of this pass are missing from the store")
    await _in_thread(ctx, adapter.load, state.weights, blob)


async def commit_pass(records: SessionRecords, ctx: RunContext, cur: PassCursor, t: int, state: PassState,
                      res: FrameResult) -> None:
    """Advance the pass's cursor past frame t and publish the frame if this pass owns it."""
    cur.state, cur.since_checkpoint = state, cur.since_checkpoint + 1
    if ctx.run.owner(t) == cur.direction:
        cur.published += 1
        # After a failover the frames since the last checkpoint are recomputed (identically); the
        # ones the lost worker already published are not announced twice.
        if await records.result_run(ctx.sid, t) != ctx.run.id:
            event = Event("frame", ctx.run.id, t, cur.direction, published=cur.published, total=ctx.run.total)
            await records.publish_result(ctx.sid, t, ctx.run.id, encode_labels(res.labels()), event)


T = TypeVar("T")


async def _in_thread(ctx: RunContext, fn: Callable[..., T], *args: Any) -> T:
    """asyncio.to_thread on the run's executor (context variables travel along as with to_thread)."""
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(ctx.executor, call)


def _annotation(ctx: RunContext, t: int) -> np.ndarray | None:
    if t not in ctx.run.anchors or t not in ctx.annotations:
        return None
    return decode_labels(ctx.annotations[t])


async def checkpoint(records: SessionRecords, ctx: RunContext, cur: PassCursor,
                     finished: bool) -> None:
    if cur.state is None:
        return
    started = time.perf_counter()
    kind, written, size = await _write_state(records, ctx, cur, cur.state)
    if ctx.metrics is not None:
        ctx.metrics.state_bytes.observe(size)
        ctx.metrics.state_written.labels(kind).inc(written)
    await records.put_progress(ctx.sid, cur.direction,
                               PassProgress(ctx.run.id, cur.state.cursor, cur.published, finished))
    cur.since_checkpoint = 0
    log.debug("checkpoint", extra={"session": ctx.sid, "direction": cur.direction, "kind": kind, "bytes": written,
                                   "ms": round(1000 * (time.perf_counter() - started), 2)})


async def _write_state(records: SessionRecords, ctx: RunContext, cur: PassCursor,
                       state: PassState) -> tuple[str, int, int]:
    """Store the pass's state as a delta of its chain when the memory only grew since, else in full:
    (kind, bytes written, bytes of the whole state). Encoded on the engine thread: copying the memory's
    tensors runs torch kernels, which must not start an OpenMP team on the event loop's thread."""
    record = await _in_thread(ctx, functools.partial(state_delta.next_record, fp16=ctx.state_fp16,
                                                     max_deltas=MAX_DELTAS), state, cur.chain)
    if record.kind == "delta":
        whole = state_codec.payload_bytes(state, ctx.state_fp16)
        await Checkpoints(records).put_state_delta(ctx.sid, cur.direction, record.chain.seq, record.data, whole,
                                      limit=ctx.max_state_bytes)
    else:
        whole = await Checkpoints(records).put_state_data(ctx.sid, cur.direction, record.data,
                                                          limit=ctx.max_state_bytes)
    cur.chain = record.chain
    return record.kind, len(record.data), whole


async def load_cursors(records: SessionRecords, sid: str, run: RunSpec) -> list[PassCursor]:
    """Resume each pass from its checkpoint when it belongs to this run, else start fresh."""
    progress = await records.progress(sid)
    out = []
    for d in run.passes():
        prog = progress.get(d)
        start = run.start(d)
        if prog is None or prog.run != run.id:
            out.append(PassCursor(d, start))
            continue
        try:
            state, chain = await Checkpoints(records).checkpoint(sid, d) or (None, None)
        except StateError as exc:
            # Written by a newer build (a rolling upgrade moved the session here) or damaged: the pass
            # starts again from its anchor. The frames come out the same; those already published are
            # not announced again (commit_pass), so the client sees no difference but the time.
            log.warning("checkpoint unreadable; recomputing the pass from its anchor",
                        extra={"session": sid, "direction": d, "error": str(exc)})
            out.append(PassCursor(d, start))
            continue
        out.append(PassCursor(d, start, state, prog.published, chain=chain))  # a resumed chain goes on with deltas
    return out


KeepGoing = Callable[[], Awaitable[str]]
CONTINUE, STOP_SAVE, STOP_ABANDON = "continue", "stop-save", "stop-abandon"


async def advance_run(records: SessionRecords, ctx: RunContext, checkpoint_every: int,
                      keep_going: KeepGoing) -> bool:
    """Step the passes together through the engine's PassScheduler, one frame each per round, while
    frames are available.

    The passes of a round compute at once when the stages are a batcher (their stage calls meet as
    one batch); their results are then committed, checkpointed and published in pass order, as when
    they ran one after the other. keep_going() is called after every round: CONTINUE; STOP_SAVE (the
    run was replaced: save every pass so nothing is published twice on resume); or STOP_ABANDON (the
    lease is lost: another worker owns the state now). Returns True when every pass is finished.
    """
    cursors = await load_cursors(records, ctx.sid, ctx.run)
    sched = PassScheduler(cursors, ctx.prop.stages, ctx.run.num_frames, ctx.available, ctx.meta.open, ctx.run.span)
    with sched:
        while True:
            if sched.waiting():
                # Frames appended since the job began (a live stream, a one-shot still storing its
                # frames) are taken within this job: ending it only to be queued again would
                # checkpoint and reload every pass.
                sched.available = ctx.available = await records.num_frames(ctx.sid)
            rnd = sched.next_round()
            if rnd is None:
                break
            for cur, t, state, res in sched.commit(rnd, await _compute_round(records, ctx, rnd)):
                assert isinstance(cur, PassCursor)
                await commit_pass(records, ctx, cur, t, state, res)
                if cur.since_checkpoint >= checkpoint_every:
                    await checkpoint(records, ctx, cur, sched.finished(cur))
            verdict = await keep_going()  # every round: a drain or a replaced run stops within one frame
            if verdict == STOP_ABANDON:
                return False
            if verdict == STOP_SAVE:
                break
    for cur in cursors:
        await checkpoint(records, ctx, cur, sched.finished(cur))
    return sched.done()


async def _compute_round(records: SessionRecords, ctx: RunContext, rnd: Round) -> list[tuple[PassState, FrameResult]]:
    """compute_pass of every step of the round: at once when a batcher can join their stage calls (the
    first error raised only after all have returned, so no engine thread outlives the run), else in turn."""
    if not rnd.concurrent:
        return [await compute_pass(records, ctx, cur, t) for cur, t in rnd.to_compute]
    outcomes = await asyncio.gather(*(compute_pass(records, ctx, cur, t) for cur, t in rnd.to_compute),
                                    return_exceptions=True)
    computed: list[tuple[PassState, FrameResult]] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        computed.append(outcome)
    return computed
