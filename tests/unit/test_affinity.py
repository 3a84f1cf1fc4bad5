"""Memory matching primitives against direct formulas."""

from __future__ import annotations

import math

import torch

from service.engine.memory.affinity import similarity, topk_softmax


def test_similarity_matches_direct_anisotropic_l2() -> None:
    g = torch.Generator().manual_seed(0)
    mk, qk = torch.randn(1, 8, 20, generator=g), torch.randn(1, 8, 6, generator=g)
    ms, qe = torch.rand(1, 1, 20, generator=g) + 1, torch.rand(1, 8, 6, generator=g)
    direct = -(qe.unsqueeze(2) * (mk.unsqueeze(3) - qk.unsqueeze(2)) ** 2).sum(1) * ms.view(1, 20, 1) / math.sqrt(8)
    torch.testing.assert_close(similarity(mk, ms, qk, qe), direct, atol=1e-5, rtol=1e-5)


def test_topk_softmax_keeps_k_and_survives_huge_distances() -> None:
    g = torch.Generator().manual_seed(1)
    sim = torch.randn(1, 50, 7, generator=g) * 3
    aff = topk_softmax(sim, 5)
    assert ((aff > 0).sum(1) == 5).all()
    torch.testing.assert_close(aff.sum(1), torch.ones(1, 7))
    top = torch.topk(sim, 5, dim=1)
    torch.testing.assert_close(aff.gather(1, top.indices), torch.softmax(top.values, 1))
    far = topk_softmax(sim - 200, 5)  # XMem's exp() without max-subtraction would give 0/0 here
    assert torch.isfinite(far).all()
    torch.testing.assert_close(far, aff, atol=1e-4, rtol=1e-4)
    assert ((topk_softmax(sim[:, :3], 30) > 0).sum(1) == 3).all()  # fewer entries than top_k
