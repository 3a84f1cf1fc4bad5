"""The worker role: takes session jobs from the queue, holds a lease, advances runs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

from service.engine.batching import BatchConfig, DynamicBatcher, batched
from service.engine.loader import Engine
from service.errors import ImosError, NotFound, StoreUnavailable
from service.metrics import Metrics
from service.sessions.model import Event, SessionMeta
from service.sessions.records import SessionRecords
from service.settings import Settings
from service.tracing import Tracing
from service.worker import attempts
from service.worker.passes import CONTINUE, STOP_ABANDON, STOP_SAVE, RunContext, advance_run

log = logging.getLogger("imos.worker")


def engine_threads(stages: object, settings: Settings) -> int:
    """Threads that call the engine. With a batcher, two per session (one per pass): threads wait
    there for their partners. Without one, a single thread: calls run one at a time anyway, and on
    CPU every thread that runs torch gets its own OpenMP team; with more team threads than cores
    libgomp stops spinning between parallel regions, which made served frames about 15 % slower
    than in-process ones on 2 cores (docs/benchmarks.md). Checkpoints are encoded there too."""
    return 2 * max(1, settings.worker_concurrency) if isinstance(stages, DynamicBatcher) else 1


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Owns the engine; processes any session whose job it takes (state lives in the store).

    When the settings enable batching (IMOS_BATCH_MAX_DELAY_MS > 0) the engine's stages are wrapped
    in a DynamicBatcher, so the frames of concurrent sessions and of a session's two passes run as
    one batch.
    """

    def __init__(self, records: SessionRecords, engine: Engine, settings: Settings, ident: str | None = None,
                 metrics: Metrics | None = None, tracing: Tracing | None = None) -> None:
        batching = BatchConfig(settings.batch_max_size, settings.batch_max_delay_ms)
        self.engine = dataclasses.replace(engine, stages=batched(engine.stages, batching))
        self.records, self.settings = records, settings
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        self.id = ident or worker_id()
        self.frames_done = 0
        self._slots = asyncio.Semaphore(max(1, settings.worker_concurrency))
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads = ThreadPoolExecutor(engine_threads(self.engine.stages, settings), "imos-engine")

    async def run(self, stop: asyncio.Event) -> None:
        """Take jobs until stop is set; jobs in hand then checkpoint at the next frame and hand over."""
        try:
            await self._take_jobs(stop)
        finally:
            self.close()

    async def _take_jobs(self, stop: asyncio.Event) -> None:
        self._stop = stop
        beating = asyncio.create_task(self._heartbeats(stop))
        try:
            await self._job_loop(stop)
        finally:
            beating.cancel()
            try:
                await self.records.leave(self.id)
            except StoreUnavailable:
                pass  # its heartbeat lapses by itself

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        """Tell the store this worker is alive, every third of its lease TTL (gateways read it)."""
        ttl = self.settings.lease_ttl_s
        info = {"model": self.engine.model_id, "backend": self.engine.stages.name,
                "device": str(self.engine.stages.device), "precision": self.engine.precision}
        while not stop.is_set():
            try:
                await self.records.heartbeat(self.id, ttl, info)
            except StoreUnavailable:
                pass
            await asyncio.sleep(ttl / 3)

    async def _job_loop(self, stop: asyncio.Event) -> None:
        backoff, next_reclaim = 0.5, 0.0
        while not stop.is_set():
            try:
                await self._slots.acquire()
                if asyncio.get_running_loop().time() >= next_reclaim:
                    await self._adopt_orphans()
                    next_reclaim = asyncio.get_running_loop().time() + self.settings.lease_ttl_s / 2
                job = await self.records.store.job_take(self.records.jobs, self.id, block_ms=500)
                backoff = 0.5
            except StoreUnavailable:
                self._slots.release()
                log.warning("store unreachable; retrying", extra={"worker": self.id, "retry_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if job is None:
                self._slots.release()
                continue
            task = asyncio.create_task(self._handle(job[0], job[1]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        """Stop the engine threads and the batcher (after run() has returned)."""
        self._threads.shutdown(wait=False)
        if isinstance(self.engine.stages, DynamicBatcher):
            self.engine.stages.close()

    async def _adopt_orphans(self) -> None:
        """Re-enqueue active sessions whose lease has lapsed (their worker died mid-run)."""
        for sid in await self.records.store.smembers(self.records.active):
            if await self.records.store.get(self.records.key(sid, "lease")) is not None:
                continue
            if await self.has_work(sid):
                log.info("adopting an orphaned session", extra={"session": sid, "worker": self.id})
                await self.records.enqueue(sid)
            elif not await self._exists(sid):
                await self.records.store.srem(self.records.active, sid)

    async def _exists(self, sid: str) -> bool:
        try:
            await self.records.meta(sid)
            return True
        except NotFound:
            return False

    @property
    def stopping(self) -> bool:
        stop = getattr(self, "_stop", None)
        return bool(stop is not None and stop.is_set())

    async def _handle(self, job_id: str, fields: dict[str, bytes]) -> None:
        try:
            rid = fields.get("request_id", b"").decode() or None
            parent = {k[6:]: v.decode() for k, v in fields.items() if k.startswith("trace.")}
            with self.tracing.span("worker.process", parent, session=fields["session"].decode(),
                                   request_id=rid or "", worker=self.id):
                await self.process(fields["session"].decode(), rid)
        except Exception:  # one bad job must not stop the worker
            log.exception("job failed", extra={"worker": self.id})
        finally:
            try:
                await self.records.store.job_ack(self.records.jobs, job_id)
            except StoreUnavailable:
                pass
            self._slots.release()

    async def process(self, sid: str, request_id: str | None = None) -> None:
        """Advance a session while work is available, under its lease."""
        lease = self.records.key(sid, "lease")
        ttl = self.settings.lease_ttl_s
        if not await self.records.store.lease_acquire(lease, self.id, ttl):
            return  # its holder re-checks for new work after releasing
        if self.metrics is not None:
            self.metrics.active_sessions.inc()
        keeper = asyncio.create_task(self._keep_lease(lease))
        try:
            await self._attempt(sid, request_id)
        except NotFound:
            return
        finally:
            keeper.cancel()
            if self.metrics is not None:
                self.metrics.active_sessions.dec()
            await self.records.store.lease_release(lease, self.id)
        if await self.has_work(sid):
            await self.records.enqueue(sid)

    async def _keep_lease(self, lease: str) -> None:
        """Refresh the lease while a long step runs (a sequence's adaptation, a first TensorRT frame):
        the checks between frames alone would let it lapse and hand the session to a second worker."""
        ttl = self.settings.lease_ttl_s
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await self.records.store.lease_refresh(lease, self.id, ttl):
                    return  # lost: the run's own check between frames stops it
            except StoreUnavailable:
                continue

    async def _attempt(self, sid: str, request_id: str | None) -> None:
        """One attempt at the session's current run, under the lease: every exception ends here, as a
        retry later (counted in the store) or as the run's terminal failure (attempts module)."""
        meta = await self.records.meta(sid)
        if meta.run is None or await self.records.failure(sid, meta.run.id) is not None:
            return
        attempt = await attempts.begin(self.records, sid, meta.run.id)
        if await attempts.give_up_if_exhausted(self.records, sid, attempt, self.settings.max_attempts):
            self._count_failure(attempt.last_code)
            return
        try:
            await self._advance(sid, meta, request_id)
        except (NotFound, StoreUnavailable):
            raise  # deleted meanwhile / the store is gone: nothing to record it in
        except Exception as exc:
            if await attempts.failed_attempt(self.records, sid, attempt, exc, self.settings.max_attempts):
                self._count_failure(exc.code if isinstance(exc, ImosError) else "internal")
            elif not isinstance(exc, ImosError):
                log.exception("run attempt failed", extra={"session": sid, "worker": self.id})
            return
        await attempts.ended_cleanly(self.records, sid)

    def _count_failure(self, code: str) -> None:
        if self.metrics is not None:
            self.metrics.runs_failed.labels(code).inc()

    async def _advance(self, sid: str, meta: SessionMeta, request_id: str | None = None) -> None:
        """Advance the run of ``meta`` (read by the attempt that holds the lease)."""
        if meta.run is None:
            return
        run = meta.run
        before = await self.records.progress(sid)
        if all(d in before and before[d].run == run.id and before[d].finished for d in run.passes()):
            return  # already complete: a duplicate job
        ctx = RunContext(sid, meta, run, self.engine.propagator(meta.settings),
                         await self.records.num_frames(sid), await self.records.annotations(sid), self.metrics,
                         self.settings.max_state_bytes, self._threads, self.settings.state_fp16)

        async def keep_going() -> str:
            held = await self.records.store.lease_refresh(self.records.key(sid, "lease"), self.id,
                                                         self.settings.lease_ttl_s)
            if not held:
                return STOP_ABANDON
            if self.stopping:
                return STOP_SAVE  # draining: save every pass so another worker continues exactly here
            current = await self.records.meta(sid)
            return CONTINUE if current.run is not None and current.run.id == run.id else STOP_SAVE

        finished = await advance_run(self.records, ctx, self.settings.checkpoint_every, keep_going)
        await self.records.touch(sid)
        if finished:
            progress = await self.records.progress(sid)
            total = sum(p.published for p in progress.values() if p.run == run.id)
            log.info("run finished", extra={"session": sid, "run": run.id, "worker": self.id, "frames": total,
                                            "request_id": request_id})
            if not ctx.meta.open:
                await self.records.store.srem(self.records.active, sid)
            await self.records.publish(sid, Event("done", run.id, published=total, total=run.total))

    async def has_work(self, sid: str) -> bool:
        """True when a pass of the current run could process a frame, or finish, now."""
        try:
            meta = await self.records.meta(sid)
        except NotFound:
            return False
        if meta.run is None or await self.records.failure(sid, meta.run.id) is not None:
            return False
        progress = await self.records.progress(sid)
        available = await self.records.num_frames(sid)
        for d in meta.run.passes():
            p = progress.get(d)
            if p is None or p.run != meta.run.id:
                if meta.run.start(d) < available:
                    return True
                continue
            # a closed stream's pass can finish (and publish done) even with no frame left to process
            if not p.finished and (0 <= p.cursor < available or not meta.open):
                return True
        return False
