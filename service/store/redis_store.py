"""Store on Redis (redis.asyncio): hashes, leases, Streams with a consumer group for jobs."""

from __future__ import annotations

import builtins
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from service.errors import StoreUnavailable
from service.store.base import StreamEntry

T = TypeVar("T")
P = ParamSpec("P")
_GROUP = "workers"

# Atomic "append to hash": the new field is the current length, so concurrent appends never collide.
_HAPPEND = "local n = redis.call('HLEN', KEYS[1]); redis.call('HSET', KEYS[1], n, ARGV[1]); return n"
_REFRESH = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end")
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"


def _guard(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn connection failures into StoreUnavailable (503 / UNAVAILABLE at the edges)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"session store unreachable: {type(exc).__name__}") from None

    return wrapper


# The client is made without decode_responses, so every reply is bytes (redis-py types them bytes | str), and it
# speaks RESP2, so stream reads are lists: [[stream, [(id, {field: value}), ...]], ...].
def _raw(reply: bytes | str) -> bytes:
    return cast(bytes, reply)


def _raw_or_none(reply: bytes | str | None) -> bytes | None:
    return cast("bytes | None", reply)


def _text(reply: bytes | str) -> str:
    return cast(bytes, reply).decode()


def _streams(reply: object) -> list[list[Any]]:
    return cast("list[list[Any]]", reply or [])


def _fields(fields: dict[str, bytes]) -> dict[FieldT, EncodableT]:
    """The same dict as redis-py's field map type (dict is invariant in its key type; redis only reads it)."""
    return cast("dict[FieldT, EncodableT]", fields)


class RedisStore:
    """Implements the Store port on one Redis server."""

    def __init__(self, url: str) -> None:
        self._r = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=10,
                                    health_check_interval=15, retry_on_timeout=False)
        self._groups: set[str] = set()

    @_guard
    async def ping(self) -> None:
        await self._r.ping()

    async def close(self) -> None:
        await self._r.aclose()

    @_guard
    async def get(self, key: str) -> bytes | None:
        return _raw_or_none(await self._r.get(key))

    @_guard
    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        await self._r.set(key, value, px=int(ttl_s * 1000) if ttl_s else None)

    @_guard
    async def delete(self, *keys: str) -> None:
        if keys:
            await self._r.delete(*keys)

    @_guard
    async def expire(self, keys: list[str], ttl_s: float) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pexpire(key, int(ttl_s * 1000))
            await pipe.execute()

    @_guard
    async def hset(self, key: str, field: str, value: bytes) -> None:
        await self._r.hset(key, field, value)

    @_guard
    async def hget(self, key: str, field: str) -> bytes | None:
        return _raw_or_none(await self._r.hget(key, field))

    @_guard
    async def hgetall(self, key: str) -> dict[str, bytes]:
        return {_text(k): _raw(v) for k, v in (await self._r.hgetall(key)).items()}

    @_guard
    async def hlen(self, key: str) -> int:
        return int(await self._r.hlen(key))

    @_guard
    async def hmget(self, key: str, fields: list[str]) -> list[bytes | None]:
        return [_raw_or_none(v) for v in await self._r.hmget(key, fields)] if fields else []

    @_guard
    async def hupdate(self, key: str, values: dict[str, bytes], drop: list[str] | None = None) -> None:
        async with self._r.pipeline(transaction=True) as pipe:  # MULTI/EXEC: all or nothing
            if drop:
                pipe.hdel(key, *drop)
            if values:  # HSET needs at least one field; a pure removal is only the HDEL
                pipe.hset(key, mapping=_fields(values))
            await pipe.execute()

    @_guard
    async def happend(self, key: str, value: bytes) -> int:
        return int(await self._r.eval(_HAPPEND, 1, key, value))

    @_guard
    async def sadd(self, key: str, member: str) -> None:
        await self._r.sadd(key, member)

    @_guard
    async def srem(self, key: str, member: str) -> None:
        await self._r.srem(key, member)

    @_guard
    async def smembers(self, key: str) -> builtins.set[str]:  # `set` in this class is the method
        return {_text(m) for m in await self._r.smembers(key)}

    @_guard
    async def lease_acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._r.set(key, owner, nx=True, px=int(ttl_s * 1000)))

    @_guard
    async def lease_refresh(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._r.eval(_REFRESH, 1, key, owner, int(ttl_s * 1000)))

    @_guard
    async def lease_release(self, key: str, owner: str) -> None:
        await self._r.eval(_RELEASE, 1, key, owner)

    @_guard
    async def xadd(self, stream: str, fields: dict[str, bytes], maxlen: int = 100_000) -> str:
        return _text(await self._r.xadd(stream, _fields(fields), maxlen=maxlen, approximate=True))

    @_guard
    async def hset_and_xadd(self, key: str, field: str, value: bytes, stream: str,
                            fields: dict[str, bytes]) -> str:
        async with self._r.pipeline(transaction=True) as pipe:  # MULTI/EXEC: both or neither
            pipe.hset(key, field, value)
            pipe.xadd(stream, _fields(fields), maxlen=100_000, approximate=True)
            _, entry_id = await pipe.execute()
        return _text(entry_id)

    @_guard
    async def xread(self, stream: str, after: str, block_ms: int, count: int = 100) -> list[StreamEntry]:
        reply = await self._r.xread({stream: after}, count=count, block=max(block_ms, 1))
        return [(eid.decode(), {k.decode(): v for k, v in f.items()}) for _, entries in _streams(reply)
                for eid, f in entries]

    async def _ensure_group(self, queue: str) -> None:
        if queue in self._groups:
            return
        try:
            await self._r.xgroup_create(queue, _GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(queue)

    @_guard
    async def job_push(self, queue: str, fields: dict[str, bytes]) -> str:
        await self._ensure_group(queue)
        return _text(await self._r.xadd(queue, _fields(fields)))

    @_guard
    async def job_take(self, queue: str, consumer: str, block_ms: int) -> StreamEntry | None:
        await self._ensure_group(queue)
        reply = await self._r.xreadgroup(_GROUP, consumer, {queue: ">"}, count=1, block=max(block_ms, 1))
        for _, entries in _streams(reply):
            for eid, f in entries:
                return eid.decode(), {k.decode(): v for k, v in f.items()}
        return None

    @_guard
    async def job_ack(self, queue: str, job_id: str) -> None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.xack(queue, _GROUP, job_id)
            pipe.xdel(queue, job_id)
            await pipe.execute()

    @_guard
    async def job_reclaim(self, queue: str, consumer: str, min_idle_ms: int) -> list[StreamEntry]:
        await self._ensure_group(queue)
        reply = await self._r.xautoclaim(queue, _GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0")
        entries = reply[1] if reply else []
        return [(eid.decode(), {k.decode(): v for k, v in (f or {}).items()}) for eid, f in entries if f]

    @_guard
    async def queue_depth(self, queue: str) -> int:
        await self._ensure_group(queue)
        return int(await self._r.xlen(queue))
