"""Flow-aware propagation: warping a distribution, the convex fusion rule, and the engine with it on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from service.engine import flow_fusion
from service.engine.preprocess import image_tensor, plan_geometry
from service.engine.propagate import Propagator
from tests.conftest import moving_sequence


def _square(h: int = 24, w: int = 24, x: int = 8) -> torch.Tensor:
    """A [2, h, w] distribution: one object, a 6x6 square at column x."""
    obj = torch.zeros(h, w)
    obj[8:14, x:x + 6] = 1
    return torch.stack([1 - obj, obj])


def test_zero_flow_carries_the_distribution_unchanged() -> None:
    prob = _square()
    carried = flow_fusion.warp_probs(prob, np.zeros((24, 24, 2), np.float32))
    torch.testing.assert_close(carried, prob)


def test_flow_moves_the_object_and_keeps_a_distribution() -> None:
    flow = np.zeros((24, 24, 2), np.float32)
    flow[..., 0] = -3  # every current pixel comes from 3 pixels to its left: the object moved right by 3
    carried = flow_fusion.warp_probs(_square(x=8), flow)
    torch.testing.assert_close(carried, _square(x=11))
    torch.testing.assert_close(carried.sum(0), torch.ones(24, 24))


def test_pixels_from_outside_the_frame_are_background() -> None:
    flow = np.full((24, 24, 2), 30, np.float32)
    carried = flow_fusion.warp_probs(_square(), flow)
    assert float(carried[1].max()) == 0 and float(carried[0].min()) == 1


def test_linear_fusion_is_convex_between_the_readout_and_the_carried_mask() -> None:
    model, prev = _square(x=2), _square(x=12)
    still = np.zeros((24, 24, 2), np.float32)
    torch.testing.assert_close(flow_fusion.fuse(model, prev, still, 0.0, "linear"), model)
    torch.testing.assert_close(flow_fusion.fuse(model, prev, still, 1.0, "linear"), prev)
    part = flow_fusion.fuse(model, prev, still, 0.25, "linear")
    torch.testing.assert_close(part, 0.75 * model + 0.25 * prev)
    torch.testing.assert_close(part.sum(0), torch.ones(24, 24))


def test_geometric_fusion_follows_a_confident_prior_over_a_hesitant_readout() -> None:
    still = np.zeros((1, 1, 2), np.float32)
    prior = torch.tensor([0.05, 0.95]).view(2, 1, 1)       # flow carries the object here, confidently
    hesitant = torch.tensor([0.6, 0.4]).view(2, 1, 1)      # the readout leans to background
    sure_bg = torch.tensor([0.999, 0.001]).view(2, 1, 1)   # the readout is sure it ended
    geo = flow_fusion.fuse(hesitant, prior, still, 0.4)
    lin = flow_fusion.fuse(hesitant, prior, still, 0.4, "linear")
    assert float(geo[1]) > float(lin[1]) > 0.5            # both keep the object; the geometric mix more so
    assert float(flow_fusion.fuse(sure_bg, prior, still, 0.4)[1]) < 0.5  # a sure readout still wins
    torch.testing.assert_close(geo.sum(0), torch.ones(1, 1))
    torch.testing.assert_close(flow_fusion.fuse(hesitant, prior, still, 0.0), hesitant)


def test_objects_added_since_the_previous_frame_start_from_nothing() -> None:
    prev = _square()
    model = torch.cat([_square(), torch.zeros(1, 24, 24)])  # a second object joined by annotation
    for mix in flow_fusion.MIXES:
        fused = flow_fusion.fuse(model, prev, np.zeros((24, 24, 2), np.float32), 0.5, mix)
        assert fused.shape == (3, 24, 24) and float(fused[2].abs().max()) < 1e-5


def test_grey_plane_undoes_the_network_normalisation() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (20, 36), dtype=np.uint8)
    grey = flow_fusion.grey_plane(image_tensor(frame, plan_geometry(20, 36, -1), torch.device("cpu")))
    assert grey.dtype == torch.uint8 and grey.shape == (32, 48)  # padded to /16 as the network sees it
    inner = grey[6:26, 6:42].numpy().astype(int)
    assert np.abs(inner - frame.astype(int)).max() <= 1


@pytest.fixture()
def fusing(tiny_propagator: Propagator) -> Propagator:
    cfg = dataclasses.replace(tiny_propagator.config, flow_weight=0.5)
    return Propagator(tiny_propagator.stages, cfg, "tiny:1", tiny_propagator.max_objects)


def test_fusion_changes_the_masks_and_both_directions_equal_separate_passes(
        tiny_propagator: Propagator, fusing: Propagator) -> None:
    frames, mask = moving_sequence(9, 48, 2)
    plain = {r.index: r.probs for r in tiny_propagator.run(frames, mask, 4, "both")}
    both = {r.index: r.probs for r in fusing.run(frames, mask, 4, "both")}
    fwd = {r.index: r.probs for r in fusing.run(frames, mask, 4, "forward")}
    bwd = {r.index: r.probs for r in fusing.run(frames, mask, 4, "backward")}
    for t in range(9):
        assert np.array_equal(both[t], fwd[t] if t >= 4 else bwd[t])
        np.testing.assert_allclose(both[t].sum(0), 1.0, atol=1e-5)
    assert max(float(np.abs(plain[t] - both[t]).max()) for t in range(9) if t != 4) > 0.01
    np.testing.assert_array_equal(both[4], plain[4])  # the anchor is the given mask either way


def test_a_correction_mid_pass_still_wins_with_fusion_on(fusing: Propagator) -> None:
    frames, mask = moving_sequence(8, 48, 2)
    st, _ = fusing.start(frames[0], mask, 0, "forward", 8)
    for _ in range(3):
        st, _ = fusing.advance(st, frames[st.cursor])
    fix = np.zeros_like(mask)
    fix[5:15, 5:15] = 1
    st, res = fusing.advance(st, frames[st.cursor], fix)
    assert (res.labels()[fix == 1] == 1).all()
    assert st.core.prev_prob is not None and st.core.prev_grey is not None


@pytest.mark.parametrize(("name", "value", "message"), [
    ("flow_weight", "1.5", "flow_weight must be between"),
    ("flow_weight", "lots", "wants a number"),
    ("end_fraction", "1", "end_fraction must be"),
    ("flow_mix", "max", "flow_mix must be geometric or linear"),
])
def test_bad_lever_settings_are_refused_by_name(name: str, value: str, message: str) -> None:
    from service.engine.spec import MemoryConfig
    from service.errors import InvalidInput

    with pytest.raises(InvalidInput, match=message):
        MemoryConfig().with_overrides({name: value})
    assert MemoryConfig().with_overrides({"flow_weight": "0.25"}).flow_weight == 0.25


def test_flow_computed_small_is_scaled_back_to_full_size_pixels() -> None:
    rng = np.random.default_rng(1)
    base = (rng.random((60, 80)) * 255).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(base, (0, 0), 3)
    prev = np.ascontiguousarray(base[:, 4:68])
    cur = np.ascontiguousarray(base[:, 0:64])     # the scene moved 4 px right: cur(x) = prev(x - 4)
    full = flow_fusion.flow_at(cur, prev, 0)
    small = flow_fusion.flow_at(cur, prev, 30)    # computed at half size
    assert small.shape == full.shape == (60, 64, 2)
    inner = (slice(15, 45), slice(15, 45))
    dx_full, dx_small = float(np.median(full[inner][..., 0])), float(np.median(small[inner][..., 0]))
    assert abs(dx_full + 4) < 1.0 and abs(dx_small + 4) < 1.0   # both in full-size pixels
    assert abs(float(np.median(small[inner][..., 1]))) < 0.5
