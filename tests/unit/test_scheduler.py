"""The pass scheduler: rounds, the shared anchor step, finished-ness, waiting streams, batcher leases,
and the drivers built on it (Propagator.run_passes, evaluation) giving the passes' own results."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.batching import BatchConfig, DynamicBatcher
from service.engine.direction import BACKWARD, FORWARD, owner
from service.engine.propagate import Propagator
from service.engine.scheduler import PassScheduler, pass_slots
from service.errors import InvalidInput
from tests.conftest import moving_sequence


def _drive(prop: Propagator, sched: PassScheduler, frames: list[np.ndarray],
           masks: dict[int, np.ndarray]) -> list[tuple[str, int, bool]]:
    """Step every round in turn (as the in-process driver does); (direction, frame, shared) per pass step."""
    seen = []
    while (rnd := sched.next_round()) is not None:
        steps = [prop._step(slot, frames[t], masks.get(t), sched.num_frames) for slot, t in rnd.to_compute]
        for slot, t, _, res in sched.commit(rnd, steps):
            assert res.index == t
            seen.append((slot.direction, t, rnd.shared))
    return seen


def test_both_passes_share_a_middle_anchor_then_step_together(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(6, 32, 1)
    with PassScheduler(pass_slots((2,), (FORWARD, BACKWARD)), tiny_propagator.stages, 6, 6) as sched:
        first = sched.next_round()
        assert first is not None and first.shared and first.indices == (2, 2) and len(first.to_compute) == 1
        steps = [tiny_propagator._step(first.slots[0], frames[2], mask, 6)]
        committed = sched.commit(first, steps)
        assert [(c[0].direction, c[1]) for c in committed] == [(FORWARD, 2), (BACKWARD, 2)]
        assert committed[1][2].cursor == 1 and committed[1][2].direction == BACKWARD
        rest = _drive(tiny_propagator, sched, frames, {2: mask})
        assert sched.done()
    assert rest == [(FORWARD, 3, False), (BACKWARD, 1, False), (FORWARD, 4, False), (BACKWARD, 0, False),
                    (FORWARD, 5, False)]


@pytest.mark.parametrize("anchor", [0, 4])
def test_an_anchor_at_either_end_is_not_shared(tiny_propagator: Propagator, anchor: int) -> None:
    """At the last frame the forward step is segmented, never memorised; at frame 0 the backward pass
    ends at once: neither is the backward pass's own first step, so each pass computes its own."""
    frames, mask = moving_sequence(5, 32, 1)
    with PassScheduler(pass_slots((anchor,), (FORWARD, BACKWARD)), tiny_propagator.stages, 5, 5) as sched:
        seen = _drive(tiny_propagator, sched, frames, {anchor: mask})
    assert (FORWARD, anchor, False) in seen and (BACKWARD, anchor, False) in seen
    assert sorted(t for d, t, _ in seen if owner(t, (anchor,), (FORWARD, BACKWARD)) == d) == list(range(5))


def test_two_anchors_start_each_pass_on_its_own(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(7, 32, 1)
    with PassScheduler(pass_slots((2, 5), (FORWARD, BACKWARD)), tiny_propagator.stages, 7, 7) as sched:
        rnd = sched.next_round()
        assert rnd is not None and not rnd.shared and rnd.indices == (2, 5)
        seen = [(d, t) for d, t, _ in _drive(tiny_propagator, sched, frames, {2: mask, 5: mask})]
    # the round above was planned but not committed, so _drive plans it again
    assert [t for d, t in seen if d == FORWARD] == [2, 3, 4, 5, 6]
    assert [t for d, t in seen if d == BACKWARD] == [5, 4, 3, 2, 1, 0]


def test_an_open_stream_waits_for_frames_and_finishes_when_closed(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(5, 32, 1)
    with PassScheduler(pass_slots((0,), (FORWARD,), stream=True), tiny_propagator.stages, None, 2,
                       open_stream=True) as sched:
        assert [t for _, t, _ in _drive(tiny_propagator, sched, frames, {0: mask})] == [0, 1]
        assert sched.waiting() and not sched.done() and sched.next_round() is None
        sched.available = 5
        assert not sched.waiting()
        assert [t for _, t, _ in _drive(tiny_propagator, sched, frames, {})] == [2, 3, 4]
        assert not sched.done()  # still open: frame 5 may come
        sched.open = False
        assert sched.done() and not sched.waiting()


def test_only_stepping_passes_hold_batcher_leases(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(4, 32, 1)
    batcher = DynamicBatcher(tiny_propagator.stages, BatchConfig(max_batch=4, max_delay_ms=50))
    try:
        prop = Propagator(batcher, tiny_propagator.config, "tiny", 4)
        with PassScheduler(pass_slots((2,), (FORWARD, BACKWARD)), batcher, 4, 4) as sched:
            counts = []
            while (rnd := sched.next_round()) is not None:
                counts.append(batcher._clients)
                assert rnd.concurrent == (not rnd.shared and len(rnd.slots) == 2)
                steps = [prop._step(slot, frames[t], mask if t == 2 else None, 4) for slot, t in rnd.to_compute]
                sched.commit(rnd, steps)
            assert batcher._clients == 0  # nobody steps: nobody is waited for
        assert counts == [2, 2, 1]  # shared anchor, then frames 3 and 1, then backward's frame 0 alone
    finally:
        batcher.close()


def test_a_commit_must_match_its_round(tiny_propagator: Propagator) -> None:
    with PassScheduler(pass_slots((1,), (FORWARD,)), tiny_propagator.stages, 3, 3) as sched:
        rnd = sched.next_round()
        assert rnd is not None
        with pytest.raises(ValueError, match="0 steps for a round of 1"):
            sched.commit(rnd, [])


def test_run_passes_yields_every_pass_step_and_run_each_frame_once(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(6, 32, 1)
    steps = list(tiny_propagator.run_passes(frames, {3: mask}, "both"))
    assert [(d, r.index) for d, r in steps] == [(FORWARD, 3), (BACKWARD, 3), (FORWARD, 4), (BACKWARD, 2),
                                                (FORWARD, 5), (BACKWARD, 1), (BACKWARD, 0)]
    once = [r.index for r in tiny_propagator.run(frames, mask, 3)]
    assert once == [3, 4, 2, 5, 1, 0]


def test_run_passes_refuses_an_anchor_outside_the_sequence(tiny_propagator: Propagator) -> None:
    frames, mask = moving_sequence(3, 32, 1)
    with pytest.raises(InvalidInput, match=r"annotated frame 3 is outside the sequence \(0..2\)"):
        list(tiny_propagator.run_passes(frames, {0: mask, 3: mask}))


def test_a_span_limits_what_a_run_owns_and_where_its_passes_stop(tiny_propagator: Propagator) -> None:
    from service.engine.direction import cell

    assert cell(8, (2,), 12) == (6, 11) and cell(2, (8,), 12) == (0, 5) and cell(5, (), 9) == (0, 8)
    assert cell(4, (2, 7), 10) == (4, 5)  # 3 is as near to 2 as to 4: the earlier anchor keeps it
    assert owner(3, (5,), (FORWARD, BACKWARD), span=(4, 7)) is None
    assert [owner(t, (5,), (FORWARD, BACKWARD), span=(4, 7)) for t in range(4, 8)] == [BACKWARD, FORWARD,
                                                                                      FORWARD, FORWARD]
    frames, mask = moving_sequence(10, 32, 1)
    with PassScheduler(pass_slots((5,), (FORWARD, BACKWARD)), tiny_propagator.stages, 10, 10, span=(4, 7)) as sched:
        seen = _drive(tiny_propagator, sched, frames, {5: mask})
        assert sched.done()
    assert sorted({t for _, t, _ in seen}) == [4, 5, 6, 7]


def test_a_spanned_run_and_the_changed_frames_survive_the_store() -> None:
    import json

    from service.sessions.model import RunSpec, SessionMeta

    run = RunSpec(3, "both", (8,), num_frames=12, span=(6, 11))
    back = RunSpec.from_dict(json.loads(json.dumps(run.to_dict())))
    assert back == run and back.total == 6 and RunSpec(1, "both", (2,), num_frames=12).total == 12
    meta = SessionMeta("s", "t", 0.0, 4, 4, "m", run=run, changed=(8,))
    assert SessionMeta.from_json(meta.to_json()) == meta
