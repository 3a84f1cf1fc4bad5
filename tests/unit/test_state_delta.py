"""Checkpoint deltas: a full record plus deltas restores exactly the state a full record would."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
import torch

from service.engine import state_codec, state_delta
from service.engine.backends.torch_backend import TorchStages
from service.engine.nn.network import ImosNet
from service.engine.propagate import Propagator
from service.engine.spec import MemoryConfig
from service.engine.state import PassState
from service.engine.state_delta import Chain
from service.errors import StateError
from tests.conftest import moving_sequence


@pytest.fixture()
def roomy_propagator(tiny_net: ImosNet) -> Propagator:
    """Consolidates every few memory frames (most checkpoints fall between two consolidations)."""
    cfg = MemoryConfig(top_k=8, mem_every=2, min_mid_term_frames=3, max_mid_term_frames=8, num_prototypes=4,
                       max_long_term_elements=40, size=-1)
    return Propagator(TorchStages(tiny_net), cfg, "tiny:1", max_objects=4)


def _assert_same(a: PassState, b: PassState) -> None:
    ta, tb = state_codec.state_tensors(a), state_codec.state_tensors(b)
    assert set(ta) == set(tb)
    for name in ta:
        assert ta[name].shape == tb[name].shape and torch.equal(ta[name], tb[name]), name
    assert state_codec.meta_of(a) == state_codec.meta_of(b)


def _states(prop: Propagator, frames: int = 30, late_object_at: int | None = None) -> list[PassState]:
    """Every state of a forward pass; with late_object_at, object 2 is first given on that frame."""
    video, mask = moving_sequence(frames, 48, 2)
    first = np.where(mask == 1, 1, 0).astype(mask.dtype) if late_object_at is not None else mask
    st, _ = prop.start(video[0], first, 0, "forward", frames)
    out = [st]
    while not st.finished:
        given = mask if st.cursor == late_object_at else None
        st, _ = prop.advance(st, video[st.cursor], given)
        out.append(st)
    return out


def _checkpoint_all(states: list[PassState], every: int, fp16: bool = False,
                    max_deltas: int = 16) -> tuple[int, int]:
    """Checkpoint as the worker does and check each restore against the full record: (#full, #deltas)."""
    full, deltas, chain = b"", [], None
    counts = [0, 0]
    for st in states[::every]:
        delta = state_delta.encode_delta(st, chain, fp16) if chain is not None and chain.seq < max_deltas else None
        if delta is None:
            token = state_delta.new_token()
            full, deltas, chain = state_codec.encode(st, fp16, chain=token), [], Chain.describe(st, token, 0)
            counts[0] += 1
        else:
            deltas.append(delta)
            chain = Chain.describe(st, chain.token, chain.seq + 1)  # type: ignore[union-attr]
            counts[1] += 1
        _assert_same(state_delta.decode_chain(full, deltas), state_codec.decode(state_codec.encode(st, fp16)))
    return counts[0], counts[1]


@pytest.mark.parametrize(("memory", "every"), [("tiny", 1), ("tiny", 2), ("roomy", 1), ("roomy", 3)])
def test_chains_restore_exactly_through_consolidation_and_pruning(tiny_propagator: Propagator,
                                                                  roomy_propagator: Propagator,
                                                                  memory: str, every: int) -> None:
    states = _states(tiny_propagator if memory == "tiny" else roomy_propagator, frames=40)
    assert states[-1].core.memory.work.epoch > 1  # consolidated more than once
    if memory == "tiny":
        assert states[-1].core.memory.long.epoch > 0  # long-term memory was pruned, not only appended to
    fulls, deltas = _checkpoint_all(states, every)
    count = len(states[::every])
    assert fulls == -(-count // 17) and deltas == count - fulls  # a full record, then up to 16 deltas


def test_fp16_chains_restore_what_an_fp16_record_holds(tiny_propagator: Propagator) -> None:
    fulls, deltas = _checkpoint_all(_states(tiny_propagator), 1, fp16=True)
    assert deltas > 0


def test_an_object_given_later_travels_in_a_delta(tiny_propagator: Propagator) -> None:
    states = _states(tiny_propagator, frames=8, late_object_at=3)
    assert states[0].core.memory.work.num_groups == 1 and states[-1].core.memory.work.num_groups == 2
    _checkpoint_all(states, 1)


def test_chains_carry_flow_fusion_and_presence(tiny_propagator: Propagator) -> None:
    """With flow fusion and the presence decision on, their tensors travel in every delta and restore
    exactly; an object given later grows both."""
    cfg = dataclasses.replace(tiny_propagator.config, flow_weight=0.5, end_fraction=0.3)
    prop = Propagator(tiny_propagator.stages, cfg, "tiny:1", tiny_propagator.max_objects)
    states = _states(prop, frames=12, late_object_at=4)
    last = states[-1]
    assert last.core.prev_prob is not None and last.core.prev_prob.shape[0] == 3
    assert last.core.presence is not None and last.core.presence.peak.shape == (2,)
    fulls, deltas = _checkpoint_all(states, 1)
    assert fulls == 1 and deltas == len(states) - 1


def test_a_delta_is_smaller_than_the_full_record(roomy_propagator: Propagator) -> None:
    states = _states(roomy_propagator, frames=14)
    assert states[13].core.memory.work.epoch == states[3].core.memory.work.epoch == 0  # no consolidation between
    token = state_delta.new_token()
    chain = Chain.describe(states[3], token, 0)
    delta = state_delta.encode_delta(states[13], chain)
    assert delta is not None
    assert len(delta) < len(state_codec.encode(states[13])) * 0.8


def test_the_chain_length_is_capped(tiny_propagator: Propagator) -> None:
    assert _checkpoint_all(_states(tiny_propagator, frames=8), 1, max_deltas=2) == (3, 5)


def test_a_consolidated_store_sends_only_what_is_new(roomy_propagator: Propagator) -> None:
    """The store that consolidated names the base columns it kept ("take") and carries only its new ones;
    without its lineage (a chain from an older build) it travels whole, as version 1 deltas did."""
    states = _states(roomy_propagator, frames=26)
    before, after = states[20], states[25]
    assert (before.core.memory.work.epoch, after.core.memory.work.epoch) == (1, 2)
    assert after.core.memory.long.epoch == 0 and after.core.memory.long.size > before.core.memory.long.size > 0
    token = state_delta.new_token()
    chain = Chain.describe(before, token, 0)
    delta = state_delta.encode_delta(after, chain)
    whole = state_delta.encode_delta(after, dataclasses.replace(chain, lineage=None))
    assert delta is not None and whole is not None
    header, _ = state_codec.unpack(delta, state_delta.DELTA_MAGIC, state_delta.DELTA_VERSIONS)
    ops = {e["name"]: e for e in header["tensors"]}
    assert ops["work.key"]["op"] == "take" and ops["work.values.0"]["op"] == "take"
    assert ops["long.key"]["op"] == "append" and ops["work.use_count"]["op"] == "set"
    kept = ops["work.key"]["ranges"]
    hw = after.core.memory.hw
    assert kept[0] == [0, hw]  # the first memory frame stays; the base's other frames were consolidated
    carried = ops["work.key"]["shape"][-1]
    assert carried == after.core.memory.work.size - hw and len(delta) < len(whole)  # only the new columns
    assert struct.unpack_from("<H", delta, 8)[0] == 2 and struct.unpack_from("<H", whole, 8)[0] == 1
    full = state_codec.encode(before, chain=token)
    _assert_same(state_delta.decode_chain(full, [delta]), after)
    _assert_same(state_delta.decode_chain(full, [whole]), after)


@pytest.mark.parametrize(("base", "now", "expected"), [
    ([0, 1, 2, 3], [0, 1, 2, 3, 4, 5], (4, [[0, 4]])),
    ([0, 1, 2, 3, 4, 5], [0, 4, 5, 6], (3, [[0, 1], [4, 6]])),
    ([2, 5, 9], [5, 10, 11], (1, [[1, 2]])),
    ([], [0, 1], (0, [])),
    ([0, 1, 2], [7], (0, [])),
    ([0, 2, 4], [0, 1, 2], None),  # 1 is older than the base's newest but not in it
])
def test_kept_ranges(base: list[int], now: list[int], expected: object) -> None:
    got = state_delta.kept_ranges(torch.tensor(base, dtype=torch.int64), torch.tensor(now, dtype=torch.int64))
    assert got == expected


def test_a_take_outside_its_base_is_refused(roomy_propagator: Propagator) -> None:
    states = _states(roomy_propagator, frames=26)
    token = state_delta.new_token()
    delta = state_delta.encode_delta(states[25], Chain.describe(states[20], token, 0))
    assert delta is not None
    header, blob = state_codec.unpack(delta, state_delta.DELTA_MAGIC, state_delta.DELTA_VERSIONS)
    for entry in header["tensors"]:
        if entry["op"] == "take":
            entry["ranges"] = [[0, entry["from"] + 5]]
    bad = state_codec.pack(state_delta.DELTA_MAGIC, header["meta"],
                           {e["name"]: state_codec.tensor(e, blob, "cpu") for e in header["tensors"]}, False,
                           {e["name"]: {k: e[k] for k in ("op", "from", "ranges") if k in e} for e in header["tensors"]},
                           version=2)
    with pytest.raises(StateError, match="keeps columns its checkpoint lacks"):
        state_delta.decode_chain(state_codec.encode(states[20], chain=token), [bad])


def test_a_delta_of_another_chain_or_out_of_order_is_refused(tiny_propagator: Propagator) -> None:
    states = _states(tiny_propagator, frames=6)
    token = state_delta.new_token()
    full = state_codec.encode(states[1], chain=token)
    d1 = state_delta.encode_delta(states[2], Chain.describe(states[1], token, 0))
    d2 = state_delta.encode_delta(states[3], Chain.describe(states[2], token, 1))
    other = state_delta.encode_delta(states[2], Chain.describe(states[1], state_delta.new_token(), 0))
    assert d1 is not None and d2 is not None and other is not None
    _assert_same(state_delta.decode_chain(full, [d1, d2]), states[3])
    with pytest.raises(StateError, match="does not extend"):
        state_delta.decode_chain(full, [other])
    with pytest.raises(StateError, match="does not extend"):
        state_delta.decode_chain(full, [d2, d1])
    with pytest.raises(StateError, match="does not extend"):
        state_delta.decode_chain(state_codec.encode(states[1]), [d1])  # a record that starts no chain
    with pytest.raises(StateError, match="corrupt"):
        state_delta.decode_chain(full, [d1[:-1] + bytes([d1[-1] ^ 1])])
    with pytest.raises(StateError, match="bad magic"):
        state_delta.decode_chain(full, [full])


def test_a_restored_chain_takes_the_next_delta(roomy_propagator: Propagator) -> None:
    """A pass resumed from a chain (another worker, the next job of a live stream) writes deltas onto it."""
    states = _states(roomy_propagator, frames=8)
    token = state_delta.new_token()
    full = state_codec.encode(states[1], chain=token)
    d1 = state_delta.encode_delta(states[3], Chain.describe(states[1], token, 0))
    assert d1 is not None
    resumed, chain = state_delta.restore(full, [d1])
    assert chain is not None and (chain.token, chain.seq) == (token, 1)
    _assert_same(resumed, states[3])
    d2 = state_delta.encode_delta(states[6], chain)
    assert d2 is not None
    _assert_same(state_delta.decode_chain(full, [d1, d2]), states[6])
    assert state_delta.restore(state_codec.encode(states[1]), [])[1] is None  # no chain: the next one full
