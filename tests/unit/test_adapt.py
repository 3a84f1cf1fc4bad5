"""Per-sequence adaptation (issue 19, lever 4): the views, the tuning, the engine's adapted weights,
and resume-equals-uninterrupted on another engine that only has the stored blob."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from service.bench.synthetic_video import moving_ellipses
from service.engine import state_codec
from service.engine.adaptation import Adapter
from service.engine.backends.torch_backend import TorchStages
from service.engine.nn.network import ImosNet
from service.engine.propagate import Propagator
from service.engine.spec import MemoryConfig
from service.errors import BackendUnavailable, InvalidInput, StateError
from service.training.adapt import AdaptConfig, Prompt, adapt, adapter_state, view_clip


def _prompt(scale: float = 1.0) -> Prompt:
    frames, masks = moving_ellipses(2, 48, 48, 2)
    return Prompt(frames[0], masks[0], scale)


def test_views_are_crops_at_the_working_scale_with_objects_relabelled() -> None:
    cfg = AdaptConfig(steps=1, crop=64, length=3)
    clip = view_clip(_prompt(2.0), cfg, np.random.default_rng(0))
    assert clip is not None
    frames, labels = clip
    assert frames.shape == (3, 64, 64, 3) and labels.shape == (3, 64, 64)
    assert set(np.unique(labels[0])) - {0} == set(range(1, int(labels.max()) + 1))
    again = view_clip(_prompt(2.0), cfg, np.random.default_rng(0))
    assert again is not None and np.array_equal(again[0], frames)  # a pure function of the generator
    # at scale 2 the 48 px frame is 96 px wide: the 64 px view shows part of it, at twice the size
    whole = view_clip(_prompt(0.5), cfg, np.random.default_rng(0))
    assert whole is not None and (whole[0] == 0).all(-1).mean() > (frames == 0).all(-1).mean()


def test_adapt_tunes_a_copy_deterministically(tiny_net: ImosNet) -> None:
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    cfg = AdaptConfig(steps=3, crop=48, lr=1e-3, decoder=True)
    net, report = adapt(tiny_net, [_prompt()], cfg)
    assert report.steps == 3 and report.seconds > 0
    assert all(torch.equal(v, tiny_net.state_dict()[k]) for k, v in before.items())  # the base is untouched
    tuned = adapter_state(net)
    assert any(".adapter." in k for k in tuned) and any(k.startswith("decoder.") for k in tuned)
    assert any(not torch.equal(v, before[k]) for k, v in tuned.items() if k in before)  # the decoder moved
    again, _ = adapt(tiny_net, [_prompt()], cfg)
    assert all(torch.equal(v, adapter_state(again)[k]) for k, v in tuned.items())
    adapters_only, _ = adapt(tiny_net, [_prompt()], dataclasses.replace(cfg, decoder=False))
    kept = adapter_state(adapters_only)
    assert all(torch.equal(kept[k], before[k]) for k in kept if k.startswith("decoder."))
    assert any(not torch.equal(kept[k], tuned[k]) for k in kept if ".adapter." in k)


def test_adapt_stops_at_its_budget_and_checks_its_recipe(tiny_net: ImosNet) -> None:
    _, report = adapt(tiny_net, [_prompt()], AdaptConfig(steps=500, budget_s=0.2, crop=48))
    assert 0 < report.steps < 500 and report.seconds < 5
    with pytest.raises(InvalidInput):
        AdaptConfig(steps=1, crop=40)
    with pytest.raises(InvalidInput):
        MemoryConfig(adapt_steps=-1)


def _adapter(net: ImosNet) -> Adapter:
    return Adapter("tiny:1", lambda: net, torch.device("cpu"), lambda n: TorchStages(n))


def _propagator(net: ImosNet, adapter: Adapter | None, steps: int = 3) -> Propagator:
    cfg = MemoryConfig(top_k=8, mem_every=2, size=-1, adapt_steps=steps)
    return Propagator(TorchStages(net), cfg, "tiny:1", 16, adapter)


def _pass(prop: Propagator, frames: list[np.ndarray], mask: np.ndarray, cut: int | None,
          resume: Propagator | None = None) -> tuple[list[np.ndarray], str]:
    st, first = prop.start(frames[0], mask, 0, "forward", len(frames))
    out, key = [first.probs], st.weights
    for step in range(len(frames) - 1):
        if step == cut:
            assert resume is not None and resume.adapter is not None and prop.adapter is not None
            st = state_codec.decode(state_codec.encode(st))
            resume.adapter.load(st.weights, prop.adapter.export(st.weights))  # what the worker does
            prop = resume
        st, res = prop.advance(st, frames[st.cursor])
        out.append(res.probs)
    return out, key


def test_an_adapted_pass_resumes_identically_from_the_stored_weights(tiny_net: ImosNet) -> None:
    frames, masks = moving_ellipses(8, 48, 48, 2)
    plain, key = _pass(_propagator(tiny_net, _adapter(tiny_net)), frames, masks[0], None)
    assert key  # the state names its weights
    unadapted, _ = _pass(_propagator(tiny_net, None, steps=0), frames, masks[0], None)
    assert any(not np.array_equal(a, b) for a, b in zip(plain, unadapted))  # adaptation changed the masks
    for cut in (0, 4):
        other = _propagator(tiny_net, _adapter(tiny_net))  # another worker: never adapted this sequence
        resumed, _ = _pass(_propagator(tiny_net, _adapter(tiny_net)), frames, masks[0], cut, other)
        assert all(np.array_equal(a, b) for a, b in zip(plain, resumed)), f"cut at {cut}"


def test_both_passes_share_one_adaptation_and_errors_are_clear(tiny_net: ImosNet) -> None:
    frames, masks = moving_ellipses(6, 48, 48, 2)
    adapter = _adapter(tiny_net)
    prop = _propagator(tiny_net, adapter)
    fwd, _ = prop.start(frames[3], masks[3], 3, "forward", 6)
    bwd, _ = prop.start(frames[3], masks[3], 3, "backward", 6)
    assert fwd.weights == bwd.weights and len(adapter._held) == 1
    with pytest.raises(BackendUnavailable, match="adapt_steps"):
        _propagator(tiny_net, None).start(frames[0], masks[0], 0, "forward", 6)
    with pytest.raises(StateError, match="not loaded"):
        _propagator(tiny_net, _adapter(tiny_net)).advance(dataclasses.replace(fwd), frames[4])
    with pytest.raises(StateError, match="unreadable"):
        adapter.load("0" * 32, b"not safetensors")
