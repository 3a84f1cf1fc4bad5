"""Where each part of a session lives in the store, under one prefix, all with one TTL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np

from service.errors import Conflict, NotFound
from service.sessions.codec import decode_frame, encode_frame, pack_result, unpack_result
from service.sessions.model import Attempts, Event, Failure, PassProgress, SessionMeta
from service.store.base import Store

META_LOCK_TTL_S = 10.0
META_LOCK_WAIT_S = 5.0
PARTS = ("meta", "frames", "masks", "results", "state", "progress", "events", "lease", "source", "attempts",
         "failure", "weights")


class SessionRecords:
    """Typed reads and writes of one store, keyed ``<prefix>:s:<id>:<part>``."""

    def __init__(self, store: Store, prefix: str, ttl_s: float) -> None:
        self.store, self.prefix, self.ttl_s = store, prefix, ttl_s
        # Frames cross the network (and sit in Redis memory) only with a shared store.
        self.compress_frames = not getattr(store, "in_process", False)

    def key(self, sid: str, part: str) -> str:
        return f"{self.prefix}:s:{sid}:{part}"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def active(self) -> str:
        """Sessions with a run that is not finished: what workers watch for orphaned work."""
        return f"{self.prefix}:active"

    async def touch(self, sid: str) -> None:
        """Refresh the TTL of every part (sessions expire when idle, not while used)."""
        await self.store.expire([self.key(sid, p) for p in PARTS if p != "lease"], self.ttl_s)

    async def put_meta(self, meta: SessionMeta) -> None:
        await self.store.set(self.key(meta.id, "meta"), meta.to_json(), self.ttl_s)

    @asynccontextmanager
    async def meta_lock(self, sid: str) -> AsyncIterator[None]:
        """Serialise read-modify-write of a session's meta across gateway replicas (a Redis lease
        with a TTL, so a crashed holder cannot block the session for longer than that)."""
        key, owner = self.key(sid, "metalock"), uuid.uuid4().hex
        deadline = time.monotonic() + META_LOCK_WAIT_S
        while not await self.store.lease_acquire(key, owner, META_LOCK_TTL_S):
            if time.monotonic() > deadline:
                raise Conflict(f"session {sid} is being changed by another request; try again")
            await asyncio.sleep(0.01)
        try:
            yield
        finally:
            await self.store.lease_release(key, owner)

    async def meta(self, sid: str, tenant: str | None = None) -> SessionMeta:
        raw = await self.store.get(self.key(sid, "meta"))
        if raw is None:
            raise NotFound(f"session {sid} not found (unknown, deleted or expired)")
        meta = SessionMeta.from_json(raw)
        if tenant is not None and meta.tenant != tenant:
            raise NotFound(f"session {sid} not found (unknown, deleted or expired)")
        return meta

    async def append_frame(self, sid: str, frame: np.ndarray) -> int:
        return await self.store.happend(self.key(sid, "frames"), encode_frame(frame, self.compress_frames))

    async def frame(self, sid: str, index: int) -> np.ndarray:
        raw = await self.store.hget(self.key(sid, "frames"), str(index))
        if raw is None:
            raise NotFound(f"session {sid} has no frame {index}")
        return decode_frame(raw)

    async def num_frames(self, sid: str) -> int:
        return await self.store.hlen(self.key(sid, "frames"))

    async def put_annotation(self, sid: str, frame: int, png: bytes) -> None:
        await self.store.hset(self.key(sid, "masks"), str(frame), png)

    async def annotations(self, sid: str) -> dict[int, bytes]:
        return {int(k): v for k, v in (await self.store.hgetall(self.key(sid, "masks"))).items()}

    async def publish_result(self, sid: str, frame: int, run: int, png: bytes, event: Event) -> str:
        """Store a frame's mask and announce it atomically."""
        return await self.store.hset_and_xadd(self.key(sid, "results"), str(frame), pack_result(run, png),
                                              self.key(sid, "events"), event.fields())

    async def result_run(self, sid: str, frame: int) -> int | None:
        got = await self.result(sid, frame)
        return None if got is None else got[0]

    async def result(self, sid: str, frame: int) -> tuple[int, bytes] | None:
        raw = await self.store.hget(self.key(sid, "results"), str(frame))
        return None if raw is None else unpack_result(raw)

    async def put_progress(self, sid: str, direction: str, progress: PassProgress) -> None:
        await self.store.hset(self.key(sid, "progress"), direction, progress.to_json())

    async def progress(self, sid: str) -> dict[str, PassProgress]:
        raw = await self.store.hgetall(self.key(sid, "progress"))
        return {k: PassProgress.from_json(v) for k, v in raw.items()}

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    async def heartbeat(self, worker: str, ttl_s: float, info: dict[str, str]) -> None:
        """This worker is alive for ``ttl_s`` more seconds (what gateways' readiness and waits read)."""
        entry = json.dumps({**info, "expires": time.time() + ttl_s}).encode()
        await self.store.hset(self.workers, worker, entry)

    async def leave(self, worker: str) -> None:
        await self.store.hupdate(self.workers, {}, [worker])

    async def live_workers(self) -> dict[str, dict[str, str]]:
        """Workers whose heartbeat has not expired (expired entries are dropped on the way)."""
        now, live, stale = time.time(), {}, []
        for worker, raw in (await self.store.hgetall(self.workers)).items():
            try:
                entry = json.loads(raw)
                alive = float(entry.pop("expires")) > now
            except (ValueError, KeyError, TypeError):
                alive, entry = False, {}
            if alive:
                live[worker] = {str(k): str(v) for k, v in entry.items()}
            else:
                stale.append(worker)
        if stale:
            await self.store.hupdate(self.workers, {}, stale)
        return live

    async def enqueue(self, sid: str, request_id: str | None = None, trace: dict[str, str] | None = None) -> None:
        """A job for the session; the request id and trace context (if any) follow it into the worker."""
        fields = {"session": sid.encode()}
        if request_id:
            fields["request_id"] = request_id.encode()
        for key, value in (trace or {}).items():
            fields[f"trace.{key}"] = value.encode()
        await self.store.job_push(self.jobs, fields)

    async def put_weights(self, sid: str, key: str, blob: bytes) -> None:
        """Per-sequence adapted weights (engine.adaptation), by their key."""
        await self.store.hset(self.key(sid, "weights"), key, blob)

    async def weights(self, sid: str, key: str) -> bytes | None:
        return await self.store.hget(self.key(sid, "weights"), key)

    async def attempts(self, sid: str) -> Attempts | None:
        raw = await self.store.get(self.key(sid, "attempts"))
        return Attempts.from_json(raw) if raw else None

    async def put_attempts(self, sid: str, attempts: Attempts | None) -> None:
        if attempts is None:
            await self.store.delete(self.key(sid, "attempts"))
        else:
            await self.store.set(self.key(sid, "attempts"), attempts.to_json(), self.ttl_s)

    async def failure(self, sid: str, run: int) -> Failure | None:
        """The failure of run ``run``, if that run failed."""
        raw = await self.store.get(self.key(sid, "failure"))
        failure = Failure.from_json(raw) if raw else None
        return failure if failure is not None and failure.run == run else None

    async def fail_run(self, sid: str, failure: Failure) -> None:
        """Record the failure, take the session out of the active set, publish the terminal error event."""
        await self.store.set(self.key(sid, "failure"), failure.to_json(), self.ttl_s)
        await self.store.delete(self.key(sid, "attempts"))
        await self.store.srem(self.active, sid)
        await self.publish(sid, Event("error", failure.run, message=failure.message, code=failure.code))

    async def publish(self, sid: str, event: Event) -> str:
        return await self.store.xadd(self.key(sid, "events"), event.fields())

    async def events(self, sid: str, after: str, block_ms: int) -> list[Event]:
        entries = await self.store.xread(self.key(sid, "events"), after, block_ms)
        return [Event.parse(eid, f) for eid, f in entries]

    async def put_source(self, sid: str, blob: bytes) -> None:
        await self.store.set(self.key(sid, "source"), blob, self.ttl_s)

    async def source(self, sid: str) -> bytes | None:
        return await self.store.get(self.key(sid, "source"))

    async def delete(self, sid: str) -> None:
        await self.store.delete(*[self.key(sid, p) for p in PARTS])
        await self.store.srem(self.active, sid)

