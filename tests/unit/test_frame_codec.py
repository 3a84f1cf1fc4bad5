"""Stored frames: compressed for a shared store, raw for the in-process one, both read back exactly."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.errors import StateError
from service.sessions.codec import decode_frame, encode_frame
from service.sessions.records import SessionRecords
from service.store.memory import MemoryStore


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3)])
@pytest.mark.parametrize("compress", [True, False])
def test_frames_round_trip(shape: tuple[int, ...], compress: bool) -> None:
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = encode_frame(frame, compress)
    assert data[:4] == (b"IMFR" if compress else b"IMRW")
    assert np.array_equal(decode_frame(data), frame)


def test_damaged_frames_are_a_state_error() -> None:
    data = encode_frame(np.zeros((4, 4), np.uint8), compress=False)
    with pytest.raises(StateError, match="corrupt"):
        decode_frame(b"XXXX" + data[4:])
    with pytest.raises(StateError, match="corrupt"):
        decode_frame(data[:-3])


def test_the_in_process_store_keeps_frames_raw() -> None:
    frame = np.full((64, 64, 3), 7, np.uint8)

    async def stored(records: SessionRecords) -> bytes:
        await records.append_frame("s1", frame)
        assert np.array_equal(await records.frame("s1", 0), frame)
        raw = await records.store.hget(records.key("s1", "frames"), "0")
        assert raw is not None
        return raw

    raw = asyncio.run(stored(SessionRecords(MemoryStore(), "t", 60)))
    assert raw[:4] == b"IMRW" and len(raw) > frame.nbytes
