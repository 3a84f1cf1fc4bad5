"""In-memory Store for embedded mode and unit tests (one process, one event loop)."""

from __future__ import annotations

import asyncio
import builtins
import itertools
import time
from collections import OrderedDict

from service.store.base import StreamEntry


class MemoryStore:
    """Implements the Store port with dicts; expiry is applied lazily on access."""

    in_process = True  # values never leave this process: nothing gains from compressing them

    def __init__(self) -> None:
        self._kv: dict[str, bytes] = {}
        self._hashes: dict[str, dict[str, bytes]] = {}
        self._streams: dict[str, list[StreamEntry]] = {}
        self._deadline: dict[str, float] = {}
        self._changed = asyncio.Condition()
        self._seq = itertools.count(1)
        self._pending: dict[str, dict[str, tuple[str, float, dict[str, bytes]]]] = {}
        self._queues: dict[str, OrderedDict[str, dict[str, bytes]]] = {}
        self._sets: dict[str, set[str]] = {}

    def _alive(self, key: str) -> bool:
        deadline = self._deadline.get(key)
        if deadline is not None and time.monotonic() > deadline:
            self._kv.pop(key, None)
            self._hashes.pop(key, None)
            self._streams.pop(key, None)
            self._deadline.pop(key, None)
            return False
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, key: str) -> bytes | None:
        return self._kv.get(key) if self._alive(key) else None

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._kv[key] = value
        if ttl_s is None:
            self._deadline.pop(key, None)
        else:
            self._deadline[key] = time.monotonic() + ttl_s

    async def delete(self, *keys: str) -> None:
        for key in keys:
            for table in (self._kv, self._hashes, self._streams, self._deadline):
                table.pop(key, None)

    async def expire(self, keys: list[str], ttl_s: float) -> None:
        for key in keys:
            if key in self._kv or key in self._hashes or key in self._streams:
                self._deadline[key] = time.monotonic() + ttl_s

    async def hset(self, key: str, field: str, value: bytes) -> None:
        self._alive(key)
        self._hashes.setdefault(key, {})[field] = value

    async def hget(self, key: str, field: str) -> bytes | None:
        return self._hashes.get(key, {}).get(field) if self._alive(key) else None

    async def hgetall(self, key: str) -> dict[str, bytes]:
        return dict(self._hashes.get(key, {})) if self._alive(key) else {}

    async def hlen(self, key: str) -> int:
        return len(self._hashes.get(key, {})) if self._alive(key) else 0

    async def hmget(self, key: str, fields: list[str]) -> list[bytes | None]:
        table = self._hashes.get(key, {}) if self._alive(key) else {}
        return [table.get(f) for f in fields]

    async def hupdate(self, key: str, values: dict[str, bytes], drop: list[str] | None = None) -> None:
        self._alive(key)
        table = self._hashes.setdefault(key, {})
        for f in drop or ():
            table.pop(f, None)
        table.update(values)

    async def happend(self, key: str, value: bytes) -> int:
        self._alive(key)
        table = self._hashes.setdefault(key, {})
        n = len(table)
        table[str(n)] = value
        return n

    async def sadd(self, key: str, member: str) -> None:
        self._sets.setdefault(key, set()).add(member)

    async def srem(self, key: str, member: str) -> None:
        self._sets.get(key, set()).discard(member)

    async def smembers(self, key: str) -> builtins.set[str]:  # `set` in this class is the method
        return set(self._sets.get(key, set()))

    async def lease_acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, owner.encode(), ttl_s)
        return True

    async def lease_refresh(self, key: str, owner: str, ttl_s: float) -> bool:
        if await self.get(key) != owner.encode():
            return False
        await self.set(key, owner.encode(), ttl_s)
        return True

    async def lease_release(self, key: str, owner: str) -> None:
        if await self.get(key) == owner.encode():
            await self.delete(key)

    async def xadd(self, stream: str, fields: dict[str, bytes], maxlen: int = 100_000) -> str:
        self._alive(stream)
        entry_id = f"{int(time.time() * 1000)}-{next(self._seq)}"
        entries = self._streams.setdefault(stream, [])
        entries.append((entry_id, dict(fields)))
        del entries[:-maxlen]
        async with self._changed:
            self._changed.notify_all()
        return entry_id

    async def hset_and_xadd(self, key: str, field: str, value: bytes, stream: str,
                            fields: dict[str, bytes]) -> str:
        await self.hset(key, field, value)
        return await self.xadd(stream, fields)

    async def xread(self, stream: str, after: str, block_ms: int, count: int = 100) -> list[StreamEntry]:
        deadline = time.monotonic() + block_ms / 1000
        while True:
            found = [e for e in self._streams.get(stream, []) if _id_key(e[0]) > _id_key(after)][:count]
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=remaining)
                except TimeoutError:
                    pass

    async def job_push(self, queue: str, fields: dict[str, bytes]) -> str:
        job_id = f"{int(time.time() * 1000)}-{next(self._seq)}"
        self._queues.setdefault(queue, OrderedDict())[job_id] = dict(fields)
        async with self._changed:
            self._changed.notify_all()
        return job_id

    async def job_take(self, queue: str, consumer: str, block_ms: int) -> StreamEntry | None:
        deadline = time.monotonic() + block_ms / 1000
        while True:
            waiting = self._queues.setdefault(queue, OrderedDict())
            if waiting:
                job_id, fields = waiting.popitem(last=False)
                self._pending.setdefault(queue, {})[job_id] = (consumer, time.monotonic(), fields)
                return job_id, fields
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=remaining)
                except TimeoutError:
                    pass

    async def job_ack(self, queue: str, job_id: str) -> None:
        self._pending.get(queue, {}).pop(job_id, None)

    async def job_reclaim(self, queue: str, consumer: str, min_idle_ms: int) -> list[StreamEntry]:
        now, taken = time.monotonic(), []
        for job_id, (owner, since, fields) in list(self._pending.get(queue, {}).items()):
            if owner != consumer and (now - since) * 1000 >= min_idle_ms:
                self._pending[queue][job_id] = (consumer, now, fields)
                taken.append((job_id, fields))
        return taken

    async def queue_depth(self, queue: str) -> int:
        return len(self._queues.get(queue, {})) + len(self._pending.get(queue, {}))


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
