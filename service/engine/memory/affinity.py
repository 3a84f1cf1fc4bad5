"""Memory matching: XMem's anisotropic L2 similarity, top-k softmax and readout."""

from __future__ import annotations

import math

import torch


def similarity(mem_key: torch.Tensor, mem_shrinkage: torch.Tensor | None, query_key: torch.Tensor,
               query_selection: torch.Tensor | None) -> torch.Tensor:
    """-(sum_c e_c (k_mem,c - q_c)^2) * s_mem / sqrt(Ck).

    mem_key [1, Ck, N], mem_shrinkage [1, 1, N], query_key / query_selection [1, Ck, M]
    -> [1, N, M]. Computed in expanded form (two matmuls) as XMem does, which
    keeps float32 results within rounding of XMem's own.
    """
    ck = mem_key.shape[1]
    mk = mem_key.transpose(1, 2)
    if query_selection is not None:
        a_sq = mk.pow(2) @ query_selection
        two_ab = 2 * (mk @ (query_key * query_selection))
        b_sq = (query_selection * query_key.pow(2)).sum(1, keepdim=True)
        sim = -a_sq + two_ab - b_sq
    else:
        sim = -mk.pow(2).sum(2, keepdim=True) + 2 * (mk @ query_key)
    if mem_shrinkage is not None:
        sim = sim * mem_shrinkage.flatten(1).unsqueeze(2)
    return sim / math.sqrt(ck)


def topk_softmax(sim: torch.Tensor, top_k: int) -> torch.Tensor:
    """Softmax over the top-k memory entries of each query; others get 0.

    sim [1, N, M] -> affinity [1, N, M]. XMem takes exp() without subtracting
    the maximum; that underflows to 0/0 = NaN once similarities fall below
    about -87 (large keys, untrained or fine-tuned models). Subtracting the
    top-1 value is mathematically identical and stays within 4e-6 of XMem on
    the conformance fixture.
    """
    k = min(top_k, sim.shape[1])
    values, indices = torch.topk(sim, k=k, dim=1)
    weights = (values - values[:, :1]).exp()
    weights = weights / weights.sum(dim=1, keepdim=True)
    return torch.zeros_like(sim).scatter_(1, indices, weights)


def full_softmax(sim: torch.Tensor) -> torch.Tensor:
    """Max-subtracted softmax over dim 1 of [1, N, M] (used for potentiation)."""
    return torch.softmax(sim, dim=1)


def readout(affinity: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """values [K, C, N] @ affinity [1, N, M] -> [K, C, M]."""
    return values @ affinity
