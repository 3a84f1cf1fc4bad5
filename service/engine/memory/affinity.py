"""Memory matching: XMem's anisotropic L2 similarity, top-k softmax and readout.

Two ways to read the memory with the same numbers:

- dense (XMem's): an [N, M] affinity matrix, zero outside each query's top-k,
  then ``values @ affinity``;
- gathered (:func:`gathered_read`): per block of queries, the similarity, its top-k
  and their softmax weights, then a weighted sum of only the k selected memory
  values (``embedding_bag``). No [N, M] affinity is built and the similarity
  exists one block of queries at a time, so memory stays bounded for long
  memories and large frames. The usage counts XMem takes as ``affinity.sum(2)``
  are the same weights summed per memory entry (``index_add``).

:func:`prefer_gathered` picks the faster one for a device; see docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Similarity elements computed at once by gathered_read (a block of queries x all memory entries):
# 2**21 float32 = 8 MiB, which keeps the block near the CPU caches and bounds peak memory.
BLOCK_ELEMENTS = 1 << 21


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


def query_similarity(mem_key: torch.Tensor, mem_shrinkage: torch.Tensor | None, query_key: torch.Tensor,
                     query_selection: torch.Tensor | None) -> torch.Tensor:
    """:func:`similarity` transposed, query-major: [B, M, N], for inference (no autograd).

    The same expanded form and rounding order as :func:`similarity`, but written into
    one buffer (two accumulating matmuls, then in-place broadcasts): no [N, M]
    temporaries, and each query's row is contiguous for the top-k that follows.
    """
    ck = mem_key.shape[1]
    q = query_key.transpose(1, 2)
    if query_selection is not None:
        e = query_selection.transpose(1, 2)
        sim = torch.bmm(q * e, mem_key).mul_(2)
        sim.baddbmm_(e, mem_key.pow(2), alpha=-1)
        sim.sub_((e * q.pow(2)).sum(2, keepdim=True))
    else:
        sim = torch.bmm(q, mem_key).mul_(2).sub_(mem_key.pow(2).sum(1, keepdim=True))
    if mem_shrinkage is not None:
        sim.mul_(mem_shrinkage)
    return sim.div_(math.sqrt(ck))


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


@dataclass(frozen=True)
class GroupValues:
    """One object group's memory: the key-axis spans [start, end) it has values for, in
    order, and its values [K_g, C, end - start] for each span (XMem's per-group memory)."""

    spans: tuple[tuple[int, int], ...]
    values: tuple[torch.Tensor, ...]

    def select(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        """The group's entries of ``t`` along ``dim`` (a view when it has one span)."""
        parts = [t.narrow(dim, a, b - a) for a, b in self.spans]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim)

    def table(self) -> torch.Tensor:
        """The values as a row-per-entry table [n, K_g*C] (what ``embedding_bag`` gathers from)."""
        return torch.cat([v.flatten(0, 1).t() for v in self.values], 0)


@dataclass(frozen=True)
class Locality:
    """A spatial prior added to the similarity of the memory entries from ``start`` on: whole frames of
    ``bias.shape[1]`` entries each; ``bias`` [M, hw] is the log-weight of memory position j for query i."""

    start: int
    bias: torch.Tensor

    def add_query_major(self, sim: torch.Tensor, rows: slice) -> None:
        """In place on a query-major similarity [m, N] of the queries ``rows``."""
        hw = self.bias.shape[1]
        tail = sim[:, self.start:]
        tail.view(tail.shape[0], -1, hw).add_(self.bias[rows].unsqueeze(1))

    def add_memory_major(self, sim: torch.Tensor) -> None:
        """In place on a memory-major similarity [1, N, M]."""
        hw = self.bias.shape[1]
        tail = sim[0, self.start:]
        tail.view(-1, hw, tail.shape[-1]).add_(self.bias.t().unsqueeze(0))


def dense_read(mem_key: torch.Tensor, mem_shrinkage: torch.Tensor | None, query_key: torch.Tensor,
               query_selection: torch.Tensor, top_k: int,
               groups: list[GroupValues],
               locality: Locality | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """XMem's read: the dense [N, M] top-k affinity per group. Returns per group the
    readout [K_g, C, M], and usage [N] (``affinity.sum(2)`` of group 0, which spans all N).

    mem_key [1, Ck, N], mem_shrinkage [1, 1, N], query_key / query_selection [1, Ck, M].
    """
    sim = similarity(mem_key, mem_shrinkage, query_key, query_selection)
    if locality is not None:
        locality.add_memory_major(sim)
    outs, usage = [], None
    for gi, group in enumerate(groups):
        affinity = topk_softmax(group.select(sim, 1), top_k)
        if gi == 0:
            usage = affinity.sum(dim=2).flatten()
        outs.append(readout(affinity, torch.cat(group.values, -1)))
    assert usage is not None and usage.shape[0] == mem_key.shape[-1], "group 0 must span the whole memory"
    return outs, usage


def topk_weights(sim_qm: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k softmax of a query-major similarity [M, N], max-subtracted as in :func:`topk_softmax`.
    -> weights (summing to 1 per query) and memory indices, both [M, min(top_k, N)]."""
    values, indices = torch.topk(sim_qm, k=min(top_k, sim_qm.shape[-1]), dim=-1)
    weights = (values - values[:, :1]).exp_()
    return weights.div_(weights.sum(-1, keepdim=True)), indices


def gathered_read(mem_key: torch.Tensor, mem_shrinkage: torch.Tensor | None, query_key: torch.Tensor,
                  query_selection: torch.Tensor, top_k: int,
                  groups: list[GroupValues],
                  locality: Locality | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`dense_read` without the dense affinity, same arguments and results.

    Queries go in blocks of about BLOCK_ELEMENTS similarities: similarity, top-k,
    softmax weights, then the weighted sum of the k chosen value rows
    (``embedding_bag``); usage is the weights added per memory index.
    """
    n, m = mem_key.shape[-1], query_key.shape[-1]
    block = max(1, min(m, BLOCK_ELEMENTS // max(n, 1)))
    tables = [g.table() for g in groups]
    assert groups[0].spans == ((0, n),), "group 0 must span the whole memory"
    usage = torch.zeros(n, dtype=torch.float32, device=mem_key.device)
    parts: list[list[torch.Tensor]] = [[] for _ in groups]
    for start in range(0, m, block):
        sl = slice(start, start + block)
        sim = query_similarity(mem_key, mem_shrinkage, query_key[:, :, sl], query_selection[:, :, sl])[0]
        if locality is not None:
            locality.add_query_major(sim, sl)
        for gi, group in enumerate(groups):
            weights, indices = topk_weights(group.select(sim, 1), top_k)
            parts[gi].append(F.embedding_bag(indices, tables[gi], per_sample_weights=weights, mode="sum"))
            if gi == 0:
                usage.index_add_(0, indices.flatten(), weights.flatten())
    outs = [torch.cat(p, 0).t().reshape(g.values[0].shape[0], -1, m) for p, g in zip(parts, groups)]
    return outs, usage


def prefer_gathered(device: torch.device) -> bool:
    """Whether :func:`gathered_read` beats :func:`dense_read` on ``device``.

    On CPU it is faster at every memory size measured (N = 900 .. 19,000 entries,
    M = 900 queries; docs/benchmarks.md). On CUDA the dense read (XMem's) stays
    the default until a GPU measurement says otherwise.
    """
    return device.type == "cpu"
