"""A pass's memory checkpoints in the store: one full record plus a chain of deltas (engine.state_delta),
under the session's ``state`` part. Only workers read and write them (the gateway never decodes a
memory state, so it needs no torch)."""

from __future__ import annotations

from service.engine import state_delta
from service.engine.state import PassState
from service.engine.state_delta import Chain
from service.errors import StateError, TooLarge
from service.sessions.records import SessionRecords

# Deltas a pass's checkpoint chain may hold before the next checkpoint is written full again: bounds
# what a resume reads and what the repeated small tensors (usage, hidden state) cost in the store.
MAX_DELTAS = 16


class Checkpoints:
    """The checkpoint records of the sessions in ``records``' store."""

    def __init__(self, records: SessionRecords) -> None:
        self.records = records

    async def put_state_data(self, sid: str, direction: str, data: bytes, limit: int | None = None) -> int:
        """Store a pass's full state record (state_codec.encode), refusing one over ``limit``; the
        deltas of the chain it replaces go in the same transaction."""
        _check_limit(direction, len(data), limit)
        stale = [_delta_field(direction, i) for i in range(1, MAX_DELTAS + 1)]
        await self.records.store.hupdate(self.records.key(sid, "state"),
                                         {direction: data, _count_field(direction): b"0"}, stale)
        return len(data)

    async def put_state_delta(self, sid: str, direction: str, seq: int, data: bytes, full_bytes: int,
                              limit: int | None = None) -> int:
        """Store delta ``seq`` (1..MAX_DELTAS) of a pass's chain; ``full_bytes`` is the state's whole size,
        which ``limit`` applies to."""
        if not 1 <= seq <= MAX_DELTAS:
            raise ValueError(f"delta {seq} is outside 1..{MAX_DELTAS}")
        _check_limit(direction, full_bytes, limit)
        await self.records.store.hupdate(self.records.key(sid, "state"),
                                 {_delta_field(direction, seq): data, _count_field(direction): str(seq).encode()})
        return len(data)

    async def state(self, sid: str, direction: str) -> PassState | None:
        got = await self.checkpoint(sid, direction)
        return None if got is None else got[0]

    async def checkpoint(self, sid: str, direction: str) -> tuple[PassState, Chain | None] | None:
        """A pass's stored state and the chain its next delta may extend (None: write the next one full)."""
        fields = [direction, _count_field(direction)] + [_delta_field(direction, i) for i in range(1, MAX_DELTAS + 1)]
        full, count, *deltas = await self.records.store.hmget(self.records.key(sid, "state"), fields)
        if full is None:
            return None
        try:
            n = int(count or b"0")
        except ValueError:
            raise StateError(f"the {direction} pass's checkpoint has an unreadable delta count") from None
        chain = deltas[:n]
        if len(chain) < n or any(d is None for d in chain):
            raise StateError(f"the {direction} pass's checkpoint misses deltas of its chain")
        return state_delta.restore(full, [d for d in chain if d is not None])


def _count_field(direction: str) -> str:
    return f"{direction}#n"


def _delta_field(direction: str, seq: int) -> str:
    return f"{direction}#{seq}"


def _check_limit(direction: str, size: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise TooLarge(f"the memory state of the {direction} pass is {size} bytes, over the limit of "
                       f"{limit} (IMOS_MAX_STATE_BYTES); lower size or max_long_term_elements")
