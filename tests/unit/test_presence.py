"""Objects that end: the presence decision per object and direction."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from service.engine.presence import decide
from service.engine.propagate import Propagator
from tests.conftest import moving_sequence


def _prob(*areas: int, size: int = 20) -> torch.Tensor:
    """[1+K, size, size]: object k fills the first areas[k] pixels of its own row band."""
    k = len(areas)
    objs = torch.zeros(k, size * size)
    for i, a in enumerate(areas):
        objs[i, i * 100:i * 100 + a] = 1
    objs = objs.view(k, size, size)
    return torch.cat([(1 - objs.sum(0, keepdim=True)).clamp(0, 1), objs])


def test_an_object_that_fades_below_its_share_of_the_peak_ends_and_stays_ended() -> None:
    prob, state = decide(_prob(80, 60), None, 0.1, annotated=True)
    assert state.peak.tolist() == [80, 60] and state.ended.tolist() == [0, 0]
    prob, state = decide(_prob(7, 60), state, 0.1)            # 7 < 0.1 * 80: object 1 ends here
    assert state.ended.tolist() == [1, 0] and float(prob[1].sum()) == 0
    prob, state = decide(_prob(90, 60), state, 0.1)           # and does not come back as a ghost
    assert state.ended.tolist() == [1, 0] and float(prob[1].sum()) == 0 and float(prob[2].sum()) == 60
    torch.testing.assert_close(prob.sum(0), torch.ones(20, 20))


def test_an_annotation_of_an_ended_object_restarts_it() -> None:
    _, state = decide(_prob(80, 60), None, 0.1, annotated=True)
    _, state = decide(_prob(0, 60), state, 0.1)
    assert state.ended.tolist() == [1, 0]
    prob, state = decide(_prob(30, 60), state, 0.1, given=(0,), annotated=True)
    assert state.ended.tolist() == [0, 0] and state.peak.tolist() == [30, 60] and float(prob[1].sum()) == 30


def test_objects_that_join_later_start_live() -> None:
    _, state = decide(_prob(80), None, 0.1, annotated=True)
    _, state = decide(_prob(80, 40), state, 0.1, given=(1,), annotated=True)
    assert state.peak.tolist() == [80, 40] and state.ended.tolist() == [0, 0]


def test_the_engine_ends_a_fading_object_and_resumes_identically(tiny_propagator: Propagator) -> None:
    """Object 1 is drawn over most of the frame; the synthetic-weight net spreads about 1,000 pixels of mass
    per object on later frames, far below 0.9 of that peak: object 1 ends and holds no pixel from then on,
    object 2 (drawn small) lives, and a pass resumed from a checkpoint after the decision continues equally."""
    from service.engine import state_codec

    cfg = dataclasses.replace(tiny_propagator.config, end_fraction=0.9)
    prop = Propagator(tiny_propagator.stages, cfg, "tiny:1", tiny_propagator.max_objects)
    frames, _ = moving_sequence(10, 48, 2)
    mask = np.zeros((48, 48), np.uint8)
    mask[2:46, 2:46] = 1
    mask[20:24, 20:24] = 2
    st, _ = prop.start(frames[0], mask, 0, "forward", 10)
    out, resumed = [], None
    while not st.finished:
        if st.cursor == 5:
            resumed = state_codec.decode(state_codec.encode(st))
        st, res = prop.advance(st, frames[st.cursor])
        out.append(res.probs)
    assert st.core.presence is not None and st.core.presence.ended.tolist() == [1.0, 0.0]
    assert all(float(p[1].max()) < 1e-6 for p in out) and all(float(p[2].sum()) > 100 for p in out)
    for p in out:
        np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    assert resumed is not None and resumed.core.presence is not None
    tail = []
    while not resumed.finished:
        resumed, res = prop.advance(resumed, frames[resumed.cursor])
        tail.append(res.probs)
    assert len(tail) == 5 and all(np.array_equal(a, b) for a, b in zip(out[-5:], tail))
