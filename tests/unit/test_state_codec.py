"""PassState is a value: serialise anywhere, restore, continue with identical results."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from service.engine import state_codec
from service.engine.propagate import Propagator
from service.errors import StateError
from tests.conftest import moving_sequence


def _run_with_checkpoint(prop: Propagator, frames: list[np.ndarray], mask: np.ndarray, anchor: int,
                         direction: str, cut: int | None, fp16: bool = False) -> list[np.ndarray]:
    st, first = prop.start(frames[anchor], mask, anchor, direction, len(frames))
    out = [first.probs]
    steps = 0
    while not st.finished:
        if steps == cut:
            st = state_codec.decode(state_codec.encode(st, fp16=fp16))
        st, res = prop.advance(st, frames[st.cursor])
        out.append(res.probs)
        steps += 1
    return out


@pytest.mark.parametrize("direction,anchor", [("forward", 0), ("backward", 15)])
def test_restored_state_continues_identically(tiny_propagator: Propagator, direction: str, anchor: int) -> None:
    frames, _ = moving_sequence(16, 48, 2)
    mask = _mask_at(anchor)
    plain = _run_with_checkpoint(tiny_propagator, frames, mask, anchor, direction, None)
    for cut in (0, 4, 9):  # before, around and after consolidations into long-term memory
        resumed = _run_with_checkpoint(tiny_propagator, frames, mask, anchor, direction, cut)
        assert all(np.array_equal(a, b) for a, b in zip(plain, resumed)), f"cut at step {cut}"


@pytest.mark.parametrize("direction,anchor", [("forward", 0), ("backward", 15)])
def test_restored_state_continues_identically_with_every_lever_on(tiny_propagator: Propagator, direction: str,
                                                                  anchor: int) -> None:
    """Flow fusion (the previous frame and result), the presence decision and the size rule live in the
    state too: a resumed pass still equals an uninterrupted one."""
    cfg = dataclasses.replace(tiny_propagator.config, flow_weight=0.5, end_fraction=0.2, size_rule="64:64",
                              local_sigma=0.1)
    prop = Propagator(tiny_propagator.stages, cfg, "tiny:1", tiny_propagator.max_objects)
    frames, _ = moving_sequence(16, 48, 2)
    mask = _mask_at(anchor)
    plain = _run_with_checkpoint(prop, frames, mask, anchor, direction, None)
    assert plain[1].shape == (3, 48, 48)
    for cut in (0, 4, 9):
        resumed = _run_with_checkpoint(prop, frames, mask, anchor, direction, cut)
        assert all(np.array_equal(a, b) for a, b in zip(plain, resumed)), f"cut at step {cut}"


def _mask_at(anchor: int) -> np.ndarray:
    from service.bench.synthetic_video import moving_ellipse

    frames, mask0 = moving_ellipse(anchor + 1, 48, 48, 2)
    return mask0 if anchor == 0 else np.roll(mask0, 2, axis=1)


def test_state_round_trip_keeps_every_field(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(10, 48, 2)
    st, _ = tiny_propagator.start(frames[0], mask, 0, "forward", 10)
    for _ in range(8):
        st, _ = tiny_propagator.advance(st, frames[st.cursor])
    back = state_codec.decode(state_codec.encode(st))
    assert back.core.memory.long.size == st.core.memory.long.size > 0
    assert back.core.memory.work.groups == st.core.memory.work.groups
    assert (back.cursor, back.object_ids, back.geometry, back.config) == (st.cursor, st.object_ids,
                                                                         st.geometry, st.config)


def test_fp16_storage_is_smaller_and_close(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(12, 48, 2)
    full = state_codec.encode(tiny_propagator.start(frames[0], mask, 0, "forward", 12)[0])
    half = state_codec.encode(state_codec.decode(full), fp16=True)
    assert len(half) < 0.75 * len(full)
    plain = _run_with_checkpoint(tiny_propagator, frames, mask, 0, "forward", None)
    approx = _run_with_checkpoint(tiny_propagator, frames, mask, 0, "forward", 3, fp16=True)
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain, approx)) < 0.05


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b"XXXXXXXX" + b[8:], "magic"),
    (lambda b: b[:8] + struct.pack("<H", 99) + b[10:], "version"),
    (lambda b: b[:-10], "truncated or corrupt"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "truncated or corrupt"),
    (lambda b: b[:5], "magic"),
])
def test_corrupt_state_is_rejected(tiny_propagator: Propagator, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    frames, mask = moving_sequence(4, 48, 1)
    data = state_codec.encode(tiny_propagator.start(frames[0], mask, 0, "forward", 4)[0])
    with pytest.raises(StateError, match=message):
        state_codec.decode(mutate(data))
