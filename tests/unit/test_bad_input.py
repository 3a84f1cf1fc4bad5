"""Bad input gets a typed error whose message names the problem."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.propagate import Propagator
from service.engine.spec import MemoryConfig
from service.errors import InvalidFrames, InvalidInput, InvalidMask
from tests.conftest import moving_sequence


def _run(prop: Propagator, frames: list[np.ndarray], mask: np.ndarray, anchor: int = 0,
         direction: str = "both") -> None:
    list(prop.run(frames, mask, anchor, direction))


def test_wrong_mask_size(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(3, 48, 1)
    with pytest.raises(InvalidMask, match="mask is 40x48 but the frames are 48x48"):
        _run(tiny_propagator, frames, mask[:40])


def test_too_many_objects(tiny_propagator: Propagator) -> None:
    frames, _ = moving_sequence(3, 48, 1)
    mask = (np.arange(48 * 48).reshape(48, 48) % 6).astype(np.uint8)
    with pytest.raises(InvalidMask, match="5 objects; this model allows at most 4"):
        _run(tiny_propagator, frames, mask)


def test_empty_mask(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(3, 48, 1)
    with pytest.raises(InvalidMask, match="empty"):
        _run(tiny_propagator, frames, np.zeros_like(mask))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels(tiny_propagator: Propagator, bad: float) -> None:
    frames, mask = moving_sequence(3, 48, 1)
    floats = [f.astype(np.float32) / 255 for f in frames]
    floats[2][5, 5, 0] = bad
    with pytest.raises(InvalidFrames, match="frame 2 contains NaN or infinite"):
        _run(tiny_propagator, floats, mask)


def test_zero_frames(tiny_propagator: Propagator) -> None:
    _, mask = moving_sequence(1, 48, 1)
    with pytest.raises(InvalidFrames, match="no frames"):
        _run(tiny_propagator, [], mask)


def test_mismatched_frame_sizes(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(3, 48, 1)
    frames[1] = frames[1][:32]
    with pytest.raises(InvalidFrames, match="frame 1 is 32x48 but the sequence is 48x48"):
        _run(tiny_propagator, frames, mask)


def test_anchor_outside_sequence_and_bad_direction(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(3, 48, 1)
    with pytest.raises(InvalidInput, match="outside the sequence"):
        _run(tiny_propagator, frames, mask, anchor=3)
    with pytest.raises(InvalidInput, match="direction"):
        _run(tiny_propagator, frames, mask, direction="sideways")


def test_mask_dtype_and_labels(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(2, 48, 1)
    with pytest.raises(InvalidMask, match="whole-number"):
        _run(tiny_propagator, frames, mask.astype(np.float32) * 0.5)
    with pytest.raises(InvalidMask, match="negative"):
        _run(tiny_propagator, frames, mask.astype(np.int16) - 1)


def test_bad_settings() -> None:
    with pytest.raises(InvalidInput, match="unknown setting 'topk'"):
        MemoryConfig().with_overrides({"topk": "3"})
    with pytest.raises(InvalidInput, match="top_k wants an integer"):
        MemoryConfig().with_overrides({"top_k": "many"})
    with pytest.raises(InvalidInput, match="min_mid_term_frames"):
        MemoryConfig().with_overrides({"min_mid_term_frames": 12})
