"""The store port: the few primitives sessions, leases, events and jobs need.

Two implementations: Redis (shared by gateways and workers) and in-memory
(embedded mode, unit tests). Values are bytes; stream entries are field maps.
"""

from __future__ import annotations

import builtins
from typing import Protocol

StreamEntry = tuple[str, dict[str, bytes]]


class Store(Protocol):
    async def ping(self) -> None:
        """Raise StoreUnavailable when the backing store cannot be reached."""

    async def close(self) -> None: ...

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def expire(self, keys: list[str], ttl_s: float) -> None: ...

    async def hset(self, key: str, field: str, value: bytes) -> None: ...
    async def hget(self, key: str, field: str) -> bytes | None: ...
    async def hgetall(self, key: str) -> dict[str, bytes]: ...
    async def hlen(self, key: str) -> int: ...
    async def hmget(self, key: str, fields: list[str]) -> list[bytes | None]: ...

    async def hupdate(self, key: str, values: dict[str, bytes], drop: list[str] | None = None) -> None:
        """Atomically remove the ``drop`` fields and set ``values`` (readers see all of it or none)."""

    async def happend(self, key: str, value: bytes) -> int:
        """Atomically store value under field str(n) where n = current length; return n."""

    async def sadd(self, key: str, member: str) -> None: ...
    async def srem(self, key: str, member: str) -> None: ...
    async def smembers(self, key: str) -> builtins.set[str]: ...  # `set` in this class is the method

    async def lease_acquire(self, key: str, owner: str, ttl_s: float) -> bool: ...
    async def lease_refresh(self, key: str, owner: str, ttl_s: float) -> bool: ...
    async def lease_release(self, key: str, owner: str) -> None: ...

    async def xadd(self, stream: str, fields: dict[str, bytes], maxlen: int = 100_000) -> str: ...

    async def hset_and_xadd(self, key: str, field: str, value: bytes, stream: str,
                            fields: dict[str, bytes]) -> str:
        """Both or neither: a result and its event (a crash between them would lose or repeat one)."""

    async def xread(self, stream: str, after: str, block_ms: int, count: int = 100) -> list[StreamEntry]:
        """Entries with id > after (after = '0' for all), waiting up to block_ms for the first."""

    async def job_push(self, queue: str, fields: dict[str, bytes]) -> str: ...

    async def job_take(self, queue: str, consumer: str, block_ms: int) -> StreamEntry | None:
        """Hand one job to this consumer; it stays pending until acknowledged."""

    async def job_ack(self, queue: str, job_id: str) -> None: ...

    async def job_reclaim(self, queue: str, consumer: str, min_idle_ms: int) -> list[StreamEntry]:
        """Take over jobs another consumer left pending longer than min_idle_ms."""

    async def queue_depth(self, queue: str) -> int: ...
