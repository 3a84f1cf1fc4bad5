"""Bidirectional propagation, object labels, and objects that join on a later frame."""

from __future__ import annotations

import numpy as np

from service.engine.propagate import Propagator
from tests.conftest import moving_sequence


def test_both_directions_equal_separate_passes(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(9, 48, 2)
    both = {r.index: r for r in tiny_propagator.run(frames, mask, 4, "both")}
    fwd = {r.index: r for r in tiny_propagator.run(frames, mask, 4, "forward")}
    bwd = {r.index: r for r in tiny_propagator.run(frames, mask, 4, "backward")}
    assert sorted(both) == list(range(9)) and sorted(fwd) == list(range(4, 9)) and sorted(bwd) == list(range(5))
    for t in range(9):
        ref = fwd[t] if t >= 4 else bwd[t]
        assert np.array_equal(both[t].probs, ref.probs)
    assert np.array_equal(both[4].labels(), mask)  # the anchor reproduces the given mask


def test_label_values_are_kept(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(4, 48, 2)
    relabelled = np.where(mask == 1, 7, np.where(mask == 2, 200, 0)).astype(np.uint8)
    results = list(tiny_propagator.run(frames, relabelled, 0, "forward"))
    assert results[0].object_ids == (7, 200)
    assert set(np.unique(results[0].labels())) == {0, 7, 200}


def test_object_joining_later_is_tracked_through_consolidation(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(20, 48, 2)
    first = np.where(mask == 1, 1, 0).astype(np.uint8)
    st, res = tiny_propagator.start(frames[0], first, 0, "forward", 20)
    assert res.object_ids == (1,)
    for _ in range(4):
        st, res = tiny_propagator.advance(st, frames[st.cursor])
    second = np.where(np.roll(mask, 1, axis=1) == 2, 2, 0).astype(np.uint8)
    st, res = tiny_propagator.advance(st, frames[st.cursor], second)
    assert res.object_ids == (1, 2) and res.probs.shape[0] == 3
    assert (res.labels()[second == 2] == 2).all()
    while not st.finished:
        st, res = tiny_propagator.advance(st, frames[st.cursor])
        assert res.probs.shape[0] == 3 and np.isfinite(res.probs).all()
        np.testing.assert_allclose(res.probs.sum(0), 1.0, atol=1e-5)
    mem = st.core.memory
    assert mem.work.groups == ((0,), (1,))
    assert mem.long.size > 0 and mem.long.num_groups == 2
    for store in (mem.work, mem.long):  # group values stay aligned to the end of the key axis
        assert all(store.value_size(g) <= store.size for g in range(store.num_groups))
    assert st.core.hidden is not None and st.core.hidden.shape[1] == 2


def test_each_frame_is_encoded_once_in_both_directions(tiny_propagator: Propagator) -> None:
    """The anchor's step is shared by the two directions: n frames -> n key encodings, also at the ends."""
    frames, mask = moving_sequence(7, 48, 1)
    inner = tiny_propagator.stages
    calls = []

    class Counting:
        name, device, hidden_dim = inner.name, inner.device, inner.hidden_dim

        def encode_key(self, image):  # type: ignore[no-untyped-def]
            calls.append(1)
            return inner.encode_key(image)

        def encode_value(self, *args):  # type: ignore[no-untyped-def]
            return inner.encode_value(*args)

        def segment(self, *args):  # type: ignore[no-untyped-def]
            return inner.segment(*args)

    prop = Propagator(Counting(), tiny_propagator.config, "counting", tiny_propagator.max_objects)  # type: ignore[arg-type]
    for anchor, expected in ((3, 7), (0, 8), (6, 8)):  # at an end one direction is just the anchor frame
        calls.clear()
        results = list(prop.run(frames, mask, anchor, "both"))
        assert sorted(r.index for r in results) == list(range(7)) and len(calls) == expected
