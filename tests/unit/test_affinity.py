"""Memory matching primitives against direct formulas."""

from __future__ import annotations

import math

import pytest
import torch

from service.engine.memory import affinity, manager
from service.engine.memory.affinity import (
    GroupValues,
    dense_read,
    gathered_read,
    query_similarity,
    similarity,
    topk_softmax,
)
from service.engine.spec import MemoryConfig


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


def _memory(n: int, m: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mk, qk = torch.randn(1, 16, n, generator=g) * scale, torch.randn(1, 16, m, generator=g) * scale
    ms, qe = torch.rand(1, 1, n, generator=g) + 1, torch.rand(1, 16, m, generator=g)
    return mk, ms, qk, qe


def test_query_similarity_is_similarity_transposed() -> None:
    mk, ms, qk, qe = _memory(40, 9, 2)
    torch.testing.assert_close(query_similarity(mk, ms, qk, qe), similarity(mk, ms, qk, qe).transpose(1, 2),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(query_similarity(mk, None, qk, None), similarity(mk, None, qk, None).transpose(1, 2),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("n", "m", "k"), [(1, 5, 30), (12, 7, 30), (50, 33, 5), (300, 64, 30), (2000, 130, 30),
                                           (900, 900, 1)])
def test_gathered_read_equals_dense_read_with_usage(n: int, m: int, k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    mk, ms, qk, qe = _memory(n, m, seed=n + m + k)
    g = torch.Generator().manual_seed(k)
    values = torch.randn(3, 24, n, generator=g)
    groups = [GroupValues(((0, n),), (values,))]
    monkeypatch.setattr(affinity, "BLOCK_ELEMENTS", 4096)  # several query blocks even for small n
    dense, dense_usage = dense_read(mk, ms, qk, qe, k, groups)
    gathered, gathered_usage = gathered_read(mk, ms, qk, qe, k, groups)
    assert gathered[0].shape == dense[0].shape == (3, 24, m)
    torch.testing.assert_close(gathered[0], dense[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gathered_usage, dense_usage, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dense_usage.sum(), torch.tensor(float(m)))  # every query's weights sum to 1


def test_gathered_read_equals_dense_read_for_late_groups_and_far_keys() -> None:
    """Groups that joined later cover a suffix of the long-term and of the working memory."""
    n_long, n_work, m = 60, 90, 41
    mk, ms, qk, qe = _memory(n_long + n_work, m, seed=5, scale=4.0)  # similarities far below -87
    g = torch.Generator().manual_seed(6)
    groups = [GroupValues(((0, n_long + n_work),), (torch.randn(2, 8, n_long, generator=g),
                                                    torch.randn(2, 8, n_work, generator=g))),
              GroupValues(((n_long - 20, n_long), (n_long + n_work - 30, n_long + n_work)),
                          (torch.randn(1, 8, 20, generator=g), torch.randn(1, 8, 30, generator=g))),
              GroupValues(((n_long + n_work - 10, n_long + n_work),), (torch.randn(3, 8, 10, generator=g),))]
    dense, dense_usage = dense_read(mk, ms, qk, qe, 30, groups)
    gathered, gathered_usage = gathered_read(mk, ms, qk, qe, 30, groups)
    for d, r in zip(dense, gathered, strict=True):
        assert torch.isfinite(r).all()
        torch.testing.assert_close(r, d, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gathered_usage, dense_usage, atol=1e-5, rtol=1e-5)


def test_match_reads_the_same_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """manager.match with long-term memory and a later object group: same readout and usage either way."""
    cfg = MemoryConfig(top_k=5, max_mid_term_frames=3, min_mid_term_frames=2, num_prototypes=6)
    g = torch.Generator().manual_seed(7)
    mem = manager.empty_memory(cfg)
    for objects in (2, 2, 3, 3, 3, 3):
        key, sel = torch.randn(1, 16, 4, 5, generator=g), torch.rand(1, 16, 4, 5, generator=g)
        shrink, value = torch.rand(1, 1, 4, 5, generator=g) + 1, torch.randn(objects, 8, 4, 5, generator=g)
        mem = manager.add(mem, cfg, key, shrink, sel, value, objects)
    assert mem.long.size > 0 and mem.work.num_groups == 2 and mem.long.num_groups == 2
    qk, qe = torch.randn(1, 16, 4, 5, generator=g), torch.rand(1, 16, 4, 5, generator=g)
    results = {}
    for gathered in (False, True):
        monkeypatch.setattr(manager, "prefer_gathered", lambda device, flag=gathered: flag)
        results[gathered] = manager.match(mem, cfg, qk, qe)
    (dense_out, dense_mem), (gath_out, gath_mem) = results[False], results[True]
    torch.testing.assert_close(gath_out, dense_out, atol=1e-5, rtol=1e-5)
    for store in ("work", "long"):
        torch.testing.assert_close(getattr(gath_mem, store).use_count, getattr(dense_mem, store).use_count,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU to compare the two reads there")
def test_gathered_read_equals_dense_read_on_cuda() -> None:
    mk, ms, qk, qe = (t.cuda() for t in _memory(3000, 900, seed=11))
    groups = [GroupValues(((0, 3000),), (torch.randn(2, 64, 3000, device="cuda"),))]
    dense, dense_usage = dense_read(mk, ms, qk, qe, 30, groups)
    gathered, gathered_usage = gathered_read(mk, ms, qk, qe, 30, groups)
    torch.testing.assert_close(gathered[0], dense[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gathered_usage, dense_usage, atol=1e-4, rtol=1e-4)


def _locality_case(frames: int, h: int, w: int, n_long: int, m_seed: int = 3):  # type: ignore[no-untyped-def]
    hw = h * w
    mk, ms, qk, qe = _memory(n_long + frames * hw, hw, seed=m_seed)
    values = torch.randn(2, 8, n_long + frames * hw, generator=torch.Generator().manual_seed(m_seed + 1))
    return mk, ms, qk, qe, [GroupValues(((0, n_long + frames * hw),), (values,))]


def test_locality_is_the_same_bias_on_both_read_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prior lands on working-memory frames only (after ``start``), per memory position, and the dense
    and gathered reads agree with it; with a huge sigma it changes nothing."""
    h, w, n_long = 4, 5, 7
    mk, ms, qk, qe, groups = _locality_case(3, h, w, n_long)
    monkeypatch.setattr(affinity, "BLOCK_ELEMENTS", 64)
    loc = manager.locality_prior(0.2, h, w, n_long, mk.device)
    assert loc.bias.shape == (h * w, h * w) and torch.all(loc.bias.diagonal() == 0) and loc.bias.max() <= 0
    dense, du = dense_read(mk, ms, qk, qe, 6, groups, loc)
    gathered, gu = gathered_read(mk, ms, qk, qe, 6, groups, loc)
    torch.testing.assert_close(gathered[0], dense[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gu, du, atol=1e-5, rtol=1e-5)
    plain, _ = dense_read(mk, ms, qk, qe, 6, groups)
    assert not torch.allclose(plain[0], dense[0], atol=1e-3)
    flat, _ = gathered_read(mk, ms, qk, qe, 6, groups, manager.locality_prior(1e6, h, w, n_long, mk.device))
    torch.testing.assert_close(flat[0], plain[0], atol=1e-5, rtol=1e-5)


def test_a_narrow_locality_reads_each_query_from_its_own_position() -> None:
    """With every memory key alike, a tight prior makes each query read the values at its own position."""
    h, w = 3, 4
    hw = h * w
    mk = torch.zeros(1, 4, 2 * hw)
    values = torch.arange(2 * hw, dtype=torch.float32).remainder(hw).view(1, 1, 2 * hw)
    qk, qe = torch.zeros(1, 4, hw), torch.ones(1, 4, hw)
    groups = [GroupValues(((0, 2 * hw),), (values,))]
    out, _ = gathered_read(mk, None, qk, qe, 4, groups, manager.locality_prior(0.01, h, w, 0, mk.device))
    torch.testing.assert_close(out[0][0, 0], torch.arange(hw, dtype=torch.float32), atol=1e-4, rtol=0)


def test_local_sigma_is_a_setting_with_a_checked_range() -> None:
    assert MemoryConfig().with_overrides({"local_sigma": "0.03"}).local_sigma == 0.03
    with pytest.raises(Exception, match="local_sigma must be 0"):
        MemoryConfig(local_sigma=-1)
