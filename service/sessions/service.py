"""The session use cases both transports call: create, append, annotate, propagate, read."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

import numpy as np

from service.engine.direction import cell
from service.engine.spec import MemoryConfig
from service.engine.validate import check_frame, check_frames, check_mask
from service.errors import (
    Conflict,
    DeadlineExceeded,
    InvalidInput,
    InvalidMask,
    NotFound,
    NoWorker,
    TooLarge,
    failure_error,
)
from service.io.images import encode_frame_png
from service.io.medical.detect import load_annotation
from service.io.medical.volume import Volume
from service.io.outputs import Encoded, encode_results
from service.sessions.codec import decode_labels, encode_labels, unpack_result
from service.sessions.model import BACKWARD, BOTH, DIRECTIONS, Event, RunSpec, SessionMeta
from service.sessions.records import SessionRecords
from service.sessions.source import unpack_source
from service.settings import Settings
from service.tracing import Tracing

# Frames appended per step while a one-shot run already computes: each append is a few store round
# trips plus a job for the worker, so single frames would cost more than they overlap.
ONE_SHOT_CHUNK = 8

T = TypeVar("T")


async def with_deadline(items: AsyncIterator[T], seconds: float) -> AsyncIterator[T]:
    """The items of ``items`` while they come within ``seconds`` in all; then DeadlineExceeded."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    it = aiter(items)
    while True:
        remaining = end - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            item = await asyncio.wait_for(anext(it), remaining)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded(f"the run did not finish within {seconds:g} s "
                                   "(the server's IMOS_RUN_DEADLINE_S)") from None
        yield item


SCOPES = ("all", "affected")  # what a new run recomputes: everything, or what one correction changed

class SessionService:
    """Validates requests and writes sessions; workers do the computing."""

    def __init__(self, records: SessionRecords, settings: Settings, model: str, max_objects: int,
                 tracing: Tracing | None = None) -> None:
        self.records, self.settings = records, settings
        self.model, self.max_objects = model, max_objects
        self.tracing = tracing or Tracing()
        self.local_worker = False  # a worker runs in this process (imos serve): there is always one

    async def require_worker(self) -> None:
        """For callers that wait for their run: fail now (503) when no worker is alive to run it."""
        if not self.local_worker and not await self.records.live_workers():
            raise NoWorker("no worker is running to propagate this request: start `imos worker` "
                           f"(none has reported in the last {self.settings.lease_ttl_s:g} s)")

    async def create(self, tenant: str, frames: Sequence[np.ndarray], *, stream: bool = False,
                     settings: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                     source: bytes | None = None) -> SessionMeta:
        """A new session holding frames (none yet is fine for a stream)."""
        checked = check_frames(frames) if frames else []
        if not checked and not stream:
            raise InvalidInput("a session needs at least one frame")
        self._check_limits(len(checked), checked[0] if checked else None)
        overrides = {str(k): str(v) for k, v in (settings or {}).items()}
        MemoryConfig().with_overrides(overrides)  # reject unknown names and bad values now, not in the worker
        h, w = (checked[0].shape[:2] if checked else (0, 0))
        meta = SessionMeta(id=uuid.uuid4().hex, tenant=tenant, created=time.time(), height=int(h), width=int(w),
                           model=self.model, settings=overrides, open=stream, labels=dict(labels or {}))
        await self.records.put_meta(meta)
        if source is not None:
            await self.records.put_source(meta.id, source)
        for f in checked:
            await self.records.append_frame(meta.id, f)
        return meta

    async def one_shot(self, tenant: str, frames: Sequence[np.ndarray], frame: int, mask: np.ndarray,
                       direction: str = BOTH, settings: dict[str, str] | None = None) -> SessionMeta:
        """A session that is annotated and propagated in one call. Every input is checked before
        anything is stored; then the frames up to the annotated one go in, the run starts, and the
        rest follow in chunks while the worker computes (it takes them as they land), so storing a
        long sequence overlaps with propagating it. Wait for the run's ``done`` event; the caller
        deletes the session."""
        if direction not in DIRECTIONS:
            raise InvalidInput(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        await self.require_worker()
        checked = check_frames(frames)
        self._check_limits(len(checked), checked[0])
        if not 0 <= frame < len(checked):
            raise InvalidInput(f"frame {frame} is outside the sequence's frames 0..{len(checked) - 1}")
        labels, _ = check_mask(mask, checked[0].shape[:2], self.max_objects)
        whole = direction == BACKWARD or frame == len(checked) - 1  # no frame after the anchor to wait for
        meta = await self.create(tenant, checked if whole else checked[: frame + 1], stream=not whole,
                                 settings=settings)
        try:
            if whole:
                await self.annotate(meta.id, tenant, frame, labels)
                await self.propagate(meta.id, tenant, direction)
            else:
                await self._fill_while_running(meta, tenant, checked, frame, labels, direction)
        except BaseException:
            await self.records.delete(meta.id)
            raise
        return meta

    async def _fill_while_running(self, meta: SessionMeta, tenant: str, frames: Sequence[np.ndarray], frame: int,
                                  labels: np.ndarray, direction: str) -> None:
        """Start the run on a stream holding frames 0..frame, append the rest, close the stream."""
        async with self.records.meta_lock(meta.id):
            await self.records.put_annotation(meta.id, frame, encode_labels(labels))
            await self._new_run(meta, RunSpec(self._next_run(meta), direction, (frame,), stream=True))
        for start in range(frame + 1, len(frames), ONE_SHOT_CHUNK):
            await self.append(meta.id, tenant, frames[start:start + ONE_SHOT_CHUNK])
        await self.close_stream(meta.id, tenant)

    def _check_limits(self, count: int, frame: np.ndarray | None) -> None:
        if count > self.settings.max_frames:
            raise TooLarge(f"{count} frames exceed the limit of {self.settings.max_frames} per session")
        if frame is not None and frame.shape[0] * frame.shape[1] > self.settings.max_frame_pixels:
            raise TooLarge(f"frames of {frame.shape[0]}x{frame.shape[1]} exceed "
                           f"{self.settings.max_frame_pixels} pixels")

    async def append(self, sid: str, tenant: str, frames: Sequence[np.ndarray]) -> tuple[int, int]:
        """Add frames at the end; returns (index of the first one, frames now held)."""
        async with self.records.meta_lock(sid):
            return await self._append(sid, tenant, frames)

    async def _append(self, sid: str, tenant: str, frames: Sequence[np.ndarray]) -> tuple[int, int]:
        meta = await self.records.meta(sid, tenant)
        have = await self.records.num_frames(sid)
        shape = (meta.height, meta.width) if have else None
        checked = [check_frame(f, have + i, shape) for i, f in enumerate(frames)]
        if not checked:
            raise InvalidInput("no frames to append")
        self._check_limits(have + len(checked), checked[0])
        if not have:
            meta = dataclasses.replace(meta, height=int(checked[0].shape[0]), width=int(checked[0].shape[1]))
            await self.records.put_meta(meta)
        first = -1
        for f in checked:
            idx = await self.records.append_frame(sid, f)
            first = idx if first < 0 else first
        await self.records.touch(sid)
        if meta.open and meta.run is not None:
            await self.records.enqueue(sid)
        return first, have + len(checked)

    async def read_annotation(self, sid: str, tenant: str, data: bytes, filename: str | None,
                              frame: int) -> np.ndarray:
        """Any documented annotation upload (index PNG, .npy, NIfTI labelmap, DICOM SEG) for ``frame`` of this
        session -> labels [H, W]. A NIfTI or SEG is read against the geometry kept from the session's
        upload; one that marks another frame is refused."""
        volume = await self.source_volume(sid, tenant)
        ann = await asyncio.to_thread(load_annotation, data, volume, filename)
        if ann.frame is not None and ann.frame != frame:
            raise InvalidMask(f"the annotation marks frame {ann.frame}, not frame {frame} of this request")
        return ann.mask

    async def source_volume(self, sid: str, tenant: str, frames: list[np.ndarray] | None = None) -> Volume | None:
        """The geometry kept from the session's DICOM, NIfTI or NRRD upload as a Volume holding ``frames``
        (default: blank frames, for the geometry alone); None for other uploads."""
        meta = await self.records.meta(sid, tenant)
        blob = await self.records.source(sid)
        if blob is None:
            return None
        if frames is None:
            frames = [np.zeros((meta.height, meta.width), np.uint8)] * await self.records.num_frames(sid)
        return unpack_source(blob, frames)

    async def annotate(self, sid: str, tenant: str, frame: int, mask: np.ndarray) -> tuple[int, ...]:
        """Store a mask for one frame; on a stream it starts or corrects propagation at once."""
        async with self.records.meta_lock(sid):
            return await self._annotate(sid, tenant, frame, mask)

    async def _annotate(self, sid: str, tenant: str, frame: int, mask: np.ndarray) -> tuple[int, ...]:
        meta = await self.records.meta(sid, tenant)
        have = await self.records.num_frames(sid)
        if not 0 <= frame < have:
            raise InvalidInput(f"frame {frame} is outside the session's frames 0..{have - 1}")
        _, objects = check_mask(mask, (meta.height, meta.width), self.max_objects)
        await self.records.put_annotation(sid, frame, encode_labels(mask.astype(np.int64)))
        if frame not in meta.changed:
            meta = dataclasses.replace(meta, changed=tuple(sorted((*meta.changed, frame))))
            await self.records.put_meta(meta)
        if meta.open:
            await self._stream_annotation(meta, frame)
        return objects

    async def _stream_annotation(self, meta: SessionMeta, frame: int) -> None:
        """On a live stream every annotation starts a run over all annotations so far: frames
        already sent are recomputed and sent again (a correction in place could race the worker)."""
        anchors = tuple(sorted((await self.records.annotations(meta.id)).keys()))
        await self._new_run(meta, RunSpec(self._next_run(meta), BOTH, anchors, stream=True))

    async def propagate(self, sid: str, tenant: str, direction: str = BOTH,
                        request_id: str | None = None, scope: str = "all") -> RunSpec:
        """Start a new run over every annotated frame (earlier results are replaced as it goes). With
        scope "affected", after a finished run and one new or changed annotation, only the frames that
        annotation owns are recomputed (from it alone, both ways) and the rest keep their results."""
        if direction not in DIRECTIONS:
            raise InvalidInput(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        async with self.records.meta_lock(sid):
            return await self._propagate(sid, tenant, direction, request_id, scope)

    async def _propagate(self, sid: str, tenant: str, direction: str, request_id: str | None,
                         scope: str = "all") -> RunSpec:
        meta = await self.records.meta(sid, tenant)
        if meta.open:
            raise Conflict("this session is a live stream: its masks propagate as they arrive")
        anchors = tuple(sorted((await self.records.annotations(sid)).keys()))
        if not anchors:
            raise Conflict("no annotated frame yet: put a mask on a frame first")
        n = await self.records.num_frames(sid)
        run = RunSpec(self._next_run(meta), direction, anchors, stream=False, num_frames=n)
        if scope == "affected" and direction == BOTH and await self._only_one_change(meta):
            j = meta.changed[0]
            span = cell(j, tuple(a for a in anchors if a != j), n)
            run = dataclasses.replace(run, anchors=(j,), span=span)
        await self._new_run(meta, run, request_id)
        return run

    async def _only_one_change(self, meta: SessionMeta) -> bool:
        """A finished whole run before, and one annotation added or changed since: a correction."""
        if meta.run is None or len(meta.changed) != 1:
            return False
        return (await self.status(meta.id, meta.tenant))["state"] == "done"

    async def close_stream(self, sid: str, tenant: str) -> None:
        """No more frames will come: the passes can finish."""
        async with self.records.meta_lock(sid):
            meta = await self.records.meta(sid, tenant)
            if not meta.open:
                raise Conflict("this session is not a live stream (or is closed already): nothing to close")
            run = meta.run
            if run is not None:
                run = dataclasses.replace(run, num_frames=await self.records.num_frames(sid))
            await self.records.put_meta(dataclasses.replace(meta, open=False, run=run))
        if run is not None:
            await self.records.enqueue(sid)

    @staticmethod
    def _next_run(meta: SessionMeta) -> int:
        return (meta.run.id + 1) if meta.run else 1

    async def _new_run(self, meta: SessionMeta, run: RunSpec, request_id: str | None = None) -> None:
        await self._set_run(meta, run)
        await self.records.store.sadd(self.records.active, meta.id)
        await self.records.publish(meta.id, Event("run-started", run.id, total=run.total))
        await self.records.enqueue(meta.id, request_id, self.tracing.carrier())

    async def _set_run(self, meta: SessionMeta, run: RunSpec) -> None:
        await self.records.put_meta(dataclasses.replace(meta, run=run, changed=()))
        await self.records.touch(meta.id)

    async def status(self, sid: str, tenant: str) -> dict[str, object]:
        meta = await self.records.meta(sid, tenant)
        progress = await self.records.progress(sid)
        run = meta.run
        current = {d: p for d, p in progress.items() if run and p.run == run.id}
        published = sum(p.published for p in current.values())
        finished = run is not None and all(d in current and current[d].finished for d in run.passes())
        failure = await self.records.failure(sid, run.id) if run else None
        state = "idle" if run is None else ("failed" if failure else ("done" if finished else "running"))
        return {
            "id": sid, "frames": await self.records.num_frames(sid), "height": meta.height, "width": meta.width,
            "model": meta.model, "stream": meta.open, "annotated_frames": sorted(await self.records.annotations(sid)),
            "run": run.to_dict() if run else None, "frames_done": published, "state": state,
            "progress": (published / run.total) if run and run.total else None,
            "settings": meta.settings, "labels": meta.labels,
            "error": {"code": failure.code, "message": failure.message, "attempts": failure.attempts}
            if failure else None,
        }

    async def wait_run(self, sid: str, tenant: str, run: int | None = None) -> None:
        """Wait until run ``run`` (default: the current one) is done; its failure raises the failure's
        error (errors.failure_error), a wait past settings.run_deadline_s raises DeadlineExceeded."""
        async for _ in self.run_events(sid, tenant, run):
            pass

    async def run_events(self, sid: str, tenant: str, run: int | None = None) -> AsyncIterator[Event]:
        """The events of one run up to its done (see wait_run for failures and the deadline)."""
        if run is None:
            current = (await self.records.meta(sid, tenant)).run
            run = current.id if current else 0
        async for ev in with_deadline(self.events(sid, tenant), self.settings.run_deadline_s):
            if ev.run != run:
                continue
            if ev.kind == "error":
                raise failure_error(ev.code, ev.message)
            yield ev
            if ev.kind == "done":
                return

    async def events(self, sid: str, tenant: str, after: str = "0", until_done: bool = True,
                     poll_ms: int = 1000) -> AsyncIterator[Event]:
        """Events after the given id; with until_done, stop after the current run's done/error."""
        await self.records.meta(sid, tenant)
        while True:
            batch = await self.records.events(sid, after, poll_ms)
            if not batch:
                await self.records.meta(sid, tenant)  # a deleted or expired session ends the stream
            for ev in batch:
                after = ev.id
                yield ev
                if until_done and ev.kind in ("done", "error"):
                    meta = await self.records.meta(sid, tenant)
                    if meta.run is None or ev.run == meta.run.id:
                        return

    async def mask_png(self, sid: str, tenant: str, frame: int) -> bytes:
        await self.records.meta(sid, tenant)
        got = await self.records.result(sid, frame)
        if got is None:
            raise NotFound(f"no mask for frame {frame} yet")
        return got[1]

    async def set_labels(self, sid: str, tenant: str, labels: dict[str, str]) -> dict[str, str]:
        """Name the objects ({"1": "Liver", ...}); the names go into SEG segments and RLE outputs."""
        for key, name in labels.items():
            if not key.isdigit() or not 1 <= int(key) <= self.max_objects or not isinstance(name, str):
                raise InvalidInput(f"labels map object numbers 1..{self.max_objects} to names; got {key!r}")
            if not name.strip() or len(name) > 64:
                raise InvalidInput(f"object {key}'s name must be 1 to 64 characters")
        async with self.records.meta_lock(sid):
            meta = await self.records.meta(sid, tenant)
            merged = {**meta.labels, **{k: v.strip() for k, v in labels.items()}}
            await self.records.put_meta(dataclasses.replace(meta, labels=merged))
        return merged

    async def frame_png(self, sid: str, tenant: str, frame: int) -> bytes:
        """Frame ``frame`` of the session as a PNG (grey or RGB, as stored)."""
        await self.records.meta(sid, tenant)
        have = await self.records.num_frames(sid)
        if not 0 <= frame < have:
            raise NotFound(f"frame {frame} is outside the session's frames 0..{have - 1}")
        return await asyncio.to_thread(encode_frame_png, await self.records.frame(sid, frame))

    async def all_labels(self, sid: str, tenant: str) -> list[np.ndarray]:
        """Index masks for every frame (background where none was computed)."""
        meta = await self.records.meta(sid, tenant)
        n = await self.records.num_frames(sid)
        raw = await self.records.store.hgetall(self.records.key(sid, "results"))
        out = []
        for t in range(n):
            item = raw.get(str(t))
            out.append(decode_labels(unpack_result(item)[1]) if item else np.zeros((meta.height, meta.width), np.uint8))
        return out

    async def results_file(self, sid: str, tenant: str, fmt: str, seg_type: str = "binary") -> Encoded:
        """Every frame's mask in fmt; seg and nifti use the geometry kept from a DICOM or NIfTI upload.
        Before any run there are none (Conflict); during a run, frames not reached yet are background
        (the status's frames_done says how far it is)."""
        if (await self.records.meta(sid, tenant)).run is None:
            raise Conflict("no masks yet: no propagation has run on this session (annotate a frame, then "
                           "POST .../propagate)")
        labels = await self.all_labels(sid, tenant)
        volume = None
        if fmt in ("seg", "nifti", "nrrd"):
            volume = await self.source_volume(sid, tenant, labels)
            if volume is None:
                raise InvalidInput(f"{fmt} output needs a session created from a "
                                   f"{'DICOM series' if fmt == 'seg' else 'NIfTI or NRRD volume'}")
        meta = await self.records.meta(sid, tenant)
        names = {int(k): v for k, v in meta.labels.items() if str(k).isdigit()}
        return encode_results(fmt, labels, volume, names, self.model, seg_type)

    async def delete(self, sid: str, tenant: str) -> None:
        await self.records.meta(sid, tenant)
        await self.records.delete(sid)
