"""Loss functions and the training forward on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from service.engine.nn.network import ImosNet
from service.engine.processor import aggregate
from service.training.forward import aggregate_logits, clip_forward, memory_indices
from service.training.losses import bootstrap_p, bootstrapped_ce, clip_loss, soft_dice
from tests.conftest import tiny_spec


def test_bootstrapped_ce_keeps_the_hardest_pixels() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0] = 5.0  # confident background everywhere ...
    logits[0, 0, 0, 0], logits[0, 1, 0, 0] = -3.0, 3.0  # ... except two badly wrong pixels
    logits[0, 0, 1, 1], logits[0, 1, 1, 1] = -1.0, 1.0
    raw = F.cross_entropy(logits, target, reduction="none")[0]
    assert bootstrapped_ce(logits, target, 2 / 16) == pytest.approx(float(raw[0, 0] + raw[1, 1]) / 2)
    assert bootstrapped_ce(logits, target, 1 / 16) == pytest.approx(float(raw[0, 0]))
    assert bootstrapped_ce(logits, target, 1.0) == pytest.approx(float(raw.mean()))


def test_bootstrap_share_follows_xmem_warm_up() -> None:
    assert bootstrap_p(0, 100, (0.2, 0.7), 0.15) == 1.0
    assert bootstrap_p(19, 100, (0.2, 0.7), 0.15) == 1.0
    assert bootstrap_p(45, 100, (0.2, 0.7), 0.15) == pytest.approx(0.15 + 0.85 * 0.5)
    assert bootstrap_p(70, 100, (0.2, 0.7), 0.15) == 0.15 and bootstrap_p(99, 100, (0.2, 0.7), 0.15) == 0.15


def test_dice_is_zero_for_perfect_and_one_for_disjoint() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, :4] = 1
    target[0, 4:, :2] = 2
    perfect = torch.stack([(target == 1).float(), (target == 2).float()], 1)
    valid = torch.ones(1, 2, dtype=torch.bool)
    assert float(soft_dice(perfect, target, valid)) == pytest.approx(0.0, abs=1e-6)
    wrong = torch.stack([(target == 2).float(), (target == 1).float()], 1)
    assert float(soft_dice(wrong, target, valid)) > 0.95
    absent = torch.zeros(1, 2, 8, 8)  # an absent object predicted absent costs nothing
    assert float(soft_dice(absent, torch.zeros_like(target), valid)) == pytest.approx(0.0)
    half_valid = torch.tensor([[True, False]])  # padding objects are ignored
    assert float(soft_dice(torch.stack([perfect[:, 0], absent[:, 0] + 1], 1), target, half_valid)) == pytest.approx(0.0, abs=1e-6)


def test_aggregate_logits_match_the_engine_and_mask_padding() -> None:
    prob = torch.rand(2, 3, 5, 5)
    valid = torch.ones(2, 3, dtype=torch.bool)
    engine = aggregate(prob, dim=1)
    assert torch.allclose(torch.softmax(aggregate_logits(prob, valid), 1), engine, atol=1e-6)
    valid[0, 2] = False
    probs = torch.softmax(aggregate_logits(prob * valid[:, :, None, None], valid), 1)
    assert float(probs[0, 3].max()) == 0.0
    assert torch.allclose(probs.sum(1), torch.ones(2, 5, 5), atol=1e-6)


def test_memory_indices_keep_frame_zero_and_sample_others() -> None:
    gen = torch.Generator().manual_seed(0)
    assert memory_indices(2, 3, gen) == [0, 1] and memory_indices(3, 3, gen) == [0, 1, 2]
    for t in range(4, 9):
        idx = memory_indices(t, 3, gen)
        assert idx[0] == 0 and len(idx) == 3 and len(set(idx)) == 3 and max(idx) < t


def test_clip_forward_shapes_probabilities_and_gradients() -> None:
    torch.manual_seed(0)
    net = ImosNet(tiny_spec()).train()
    images = torch.randn(2, 5, 3, 32, 32)
    labels = torch.randint(0, 3, (2, 5, 32, 32))
    labels[1][labels[1] == 2] = 0
    valid = torch.tensor([[True, True], [True, False]])
    first = torch.stack([(labels[:, 0] == k).float() for k in (1, 2)], 1)
    out = clip_forward(net, images, first, valid, torch.Generator().manual_seed(1), ref_frames=2)
    assert out.logits.shape == (2, 4, 3, 32, 32) and out.probs.shape == out.logits.shape
    assert torch.allclose(out.probs.sum(2), torch.ones(2, 4, 32, 32), atol=1e-5)
    assert float(out.probs[1, :, 2].detach().max()) == 0.0
    terms = clip_loss(out.logits, out.probs, labels[:, 1:], valid, 0.5, 1.0)
    assert math.isfinite(float(terms.total.detach()))
    terms.total.backward()
    for part in (net.key_encoder, net.key_proj, net.value_encoder, net.decoder):
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in part.parameters())
    again = clip_forward(net, images, first, valid, torch.Generator().manual_seed(1), ref_frames=2)
    assert torch.equal(again.logits, out.logits)
