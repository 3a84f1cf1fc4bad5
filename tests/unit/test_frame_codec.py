"""Stored frames (zstd for a shared store, raw for the in-process one) and masks read back exactly;
the label map every served frame goes through."""

from __future__ import annotations

import asyncio
import struct
import zlib

import numpy as np
import pytest

from service.engine.propagate import FrameResult, channel_argmax
from service.errors import StateError
from service.sessions.codec import decode_frame, decode_labels, encode_frame, encode_labels
from service.sessions.records import SessionRecords
from service.store.memory import MemoryStore


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3)])
@pytest.mark.parametrize("compress", [True, False])
def test_frames_round_trip(shape: tuple[int, ...], compress: bool) -> None:
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = encode_frame(frame, compress)
    assert data[:4] == (b"IMZS" if compress else b"IMRW")
    assert np.array_equal(decode_frame(data), frame)


def test_zlib_frames_of_earlier_versions_still_read() -> None:
    """Sessions written before the switch to zstd (a rolling upgrade) keep working."""
    frame = np.arange(35, dtype=np.uint8).reshape(5, 7)
    old = struct.pack("<4sHHH", b"IMFR", 5, 7, 1) + zlib.compress(frame.tobytes(), 1)
    assert np.array_equal(decode_frame(old), frame)


def test_zstd_compresses_a_smooth_frame() -> None:
    frame = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    data = encode_frame(frame)
    assert len(data) < frame.nbytes / 4
    with pytest.raises(StateError, match="corrupt"):
        decode_frame(data[:12] + bytes(len(data) - 12))  # header kept, zstd body zeroed


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


def test_stored_masks_read_back_as_written_uint8() -> None:
    labels = np.array([[0, 3], [250, 3]], np.uint8)
    back = decode_labels(encode_labels(labels))
    assert back.dtype == np.uint8 and back.flags.writeable and np.array_equal(back, labels)


@pytest.mark.parametrize("channels", [2, 3, 5])
def test_channel_argmax_matches_numpy_including_ties(channels: int) -> None:
    rng = np.random.default_rng(channels)
    probs = rng.integers(0, 4, (channels, 9, 11)).astype(np.float32)  # few values: many ties
    got = channel_argmax(probs)
    assert got.dtype == np.uint8 and np.array_equal(got, probs.argmax(0))


def test_frame_labels_map_channels_to_object_ids() -> None:
    probs = np.zeros((3, 2, 2), np.float32)
    probs[0, 0, 0] = probs[1, 0, 1] = probs[2, 1, :] = 1
    labels = FrameResult(0, "forward", probs, (4, 300)).labels()
    assert labels.dtype == np.int32 and labels.tolist() == [[0, 4], [300, 300]]
    small = FrameResult(0, "forward", probs, (4, 9)).labels()
    assert small.dtype == np.uint8 and small.tolist() == [[0, 4], [9, 9]]
