"""Advancing one run of one session: both passes, frame by frame, with checkpoints."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from service.engine.propagate import FrameResult, Propagator
from service.engine.state import SessionState
from service.metrics import Metrics
from service.sessions.codec import decode_labels, encode_labels
from service.sessions.model import FORWARD, Event, PassProgress, RunSpec, SessionMeta
from service.sessions.records import SessionRecords

log = logging.getLogger("imos.worker")


@dataclass
class PassCursor:
    """A pass in flight: its state (None until started) and frames it has published."""

    direction: str
    state: SessionState | None
    published: int
    since_checkpoint: int = 0


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


def pass_finished(ctx: RunContext, cur: PassCursor) -> bool:
    if cur.state is None:
        return False
    if cur.direction == FORWARD:
        end = ctx.run.num_frames if ctx.run.num_frames is not None else ctx.available
        return cur.state.cursor >= end and not ctx.meta.open
    return cur.state.cursor < 0


def next_index(ctx: RunContext, cur: PassCursor) -> int | None:
    """Frame this pass would process next, if it is available now."""
    t = ctx.run.start(cur.direction) if cur.state is None else cur.state.cursor
    limit = ctx.run.num_frames if ctx.run.num_frames is not None else ctx.available
    return t if 0 <= t < min(limit, ctx.available) else None


async def step_pass(records: SessionRecords, ctx: RunContext, cur: PassCursor) -> FrameResult:
    """Process one frame of one pass (the engine runs in a thread) and publish it if owned."""
    t = next_index(ctx, cur)
    assert t is not None
    frame = await records.frame(ctx.sid, t)
    mask = _annotation(ctx, t)
    started = time.perf_counter()
    if cur.state is None:
        assert mask is not None
        state, res = await asyncio.to_thread(ctx.prop.start, frame, mask, t, cur.direction, ctx.run.num_frames)
    else:
        state, res = await asyncio.to_thread(ctx.prop.advance, cur.state, frame, mask)
    cur.state, cur.since_checkpoint = state, cur.since_checkpoint + 1
    if ctx.metrics is not None:
        ctx.metrics.frames.labels(cur.direction).inc()
        ctx.metrics.frame_seconds.observe(time.perf_counter() - started)
    if ctx.run.owner(t) == cur.direction:
        cur.published += 1
        # After a failover the frames since the last checkpoint are recomputed (identically); the
        # ones the lost worker already published are not announced twice.
        if await records.result_run(ctx.sid, t) != ctx.run.id:
            event = Event("frame", ctx.run.id, t, cur.direction, published=cur.published, total=ctx.run.num_frames)
            await records.publish_result(ctx.sid, t, ctx.run.id, encode_labels(res.labels()), event)
    return res


def _annotation(ctx: RunContext, t: int) -> np.ndarray | None:
    if t not in ctx.run.anchors or t not in ctx.annotations:
        return None
    return decode_labels(ctx.annotations[t])


async def checkpoint(records: SessionRecords, ctx: RunContext, cur: PassCursor,
                     finished: bool) -> None:
    if cur.state is None:
        return
    started = time.perf_counter()
    size = await records.put_state(ctx.sid, cur.direction, cur.state, limit=ctx.max_state_bytes)
    if ctx.metrics is not None:
        ctx.metrics.state_bytes.observe(size)
    await records.put_progress(ctx.sid, cur.direction,
                               PassProgress(ctx.run.id, cur.state.cursor, cur.published, finished))
    cur.since_checkpoint = 0
    log.debug("checkpoint", extra={"session": ctx.sid, "direction": cur.direction, "bytes": size,
                                   "ms": round(1000 * (time.perf_counter() - started), 2)})


async def load_cursors(records: SessionRecords, sid: str, run: RunSpec) -> list[PassCursor]:
    """Resume each pass from its checkpoint when it belongs to this run, else start fresh."""
    progress = await records.progress(sid)
    out = []
    for d in run.passes():
        prog = progress.get(d)
        if prog is not None and prog.run == run.id:
            out.append(PassCursor(d, await records.state(sid, d), prog.published))
        else:
            out.append(PassCursor(d, None, 0))
    return out


KeepGoing = Callable[[], Awaitable[str]]
CONTINUE, STOP_SAVE, STOP_ABANDON = "continue", "stop-save", "stop-abandon"


async def advance_run(records: SessionRecords, ctx: RunContext, checkpoint_every: int,
                      keep_going: KeepGoing) -> bool:
    """Interleave the passes frame by frame while frames are available.

    keep_going() is called after every frame: CONTINUE; STOP_SAVE (the run was
    replaced: save every pass so nothing is published twice on resume); or
    STOP_ABANDON (the lease is lost: another worker owns the state now).
    Returns True when every pass is finished.
    """
    cursors = await load_cursors(records, ctx.sid, ctx.run)
    progressed = True
    while progressed:
        progressed = False
        for cur in cursors:
            if pass_finished(ctx, cur) or next_index(ctx, cur) is None:
                continue
            await step_pass(records, ctx, cur)
            progressed = True
            if cur.since_checkpoint >= checkpoint_every:
                await checkpoint(records, ctx, cur, pass_finished(ctx, cur))
            verdict = await keep_going()  # every frame: a drain or a replaced run stops within one frame
            if verdict == STOP_ABANDON:
                return False
            if verdict == STOP_SAVE:
                progressed = False
                break
    for cur in cursors:
        await checkpoint(records, ctx, cur, pass_finished(ctx, cur))
    return all(pass_finished(ctx, c) for c in cursors)

