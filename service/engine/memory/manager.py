"""Working and long-term memory of one propagation direction (XMem's MemoryManager).

Pure functions over :class:`Memory`, an immutable value: every call returns a
new value and never mutates its argument.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from service.engine.memory.affinity import (
    GroupValues,
    Locality,
    dense_read,
    full_softmax,
    gathered_read,
    prefer_gathered,
    readout,
    similarity,
)
from service.engine.memory.store import KVStore
from service.engine.spec import MemoryConfig


@dataclass(frozen=True)
class Memory:
    """work / long: the two stores; hw: key elements per memory frame (h*w at stride 16)."""

    work: KVStore
    long: KVStore
    hw: int = 0


def empty_memory(cfg: MemoryConfig) -> Memory:
    return Memory(work=KVStore(count_usage=cfg.enable_long_term),
                  long=KVStore(count_usage=cfg.enable_long_term_count_usage))


def match(mem: Memory, cfg: MemoryConfig, query_key: torch.Tensor,
          query_selection: torch.Tensor) -> tuple[torch.Tensor, Memory]:
    """Read the memory for one frame.

    query_key, query_selection [1, Ck, h, w] -> readout [K, Cv, h, w] (objects in
    group order = object order) and the memory with usage counts updated.
    On CPU the read gathers each query's top-k values instead of building XMem's
    dense affinity (same numbers; affinity.prefer_gathered).
    """
    h, w = query_key.shape[-2:]
    work, long = mem.work, mem.long
    use_long = cfg.enable_long_term and long.size > 0
    if use_long:
        # Both stores hold keys here (long.size > 0; the working memory keeps its first and newest frames),
        # each with its shrinkage: add() gives every frame one and consolidation every prototype.
        assert long.key is not None and work.key is not None
        assert long.shrinkage is not None and work.shrinkage is not None
        keys = torch.cat([long.key, work.key], -1)
        shrink: torch.Tensor | None = torch.cat([long.shrinkage, work.shrinkage], -1)
    else:
        assert work.key is not None
        keys, shrink = work.key, work.shrinkage
    n_long = long.size if use_long else 0
    groups = [_group_values(work, long if use_long else None, gi) for gi in range(work.num_groups)]
    read = gathered_read if prefer_gathered(keys.device) else dense_read
    locality = locality_prior(cfg.local_sigma, h, w, n_long, keys.device) if cfg.local_sigma > 0 else None
    readouts, usage = read(keys, shrink, query_key.flatten(2), query_selection.flatten(2), cfg.top_k, groups,
                           locality)
    work = work.update_usage(usage[n_long:])
    if use_long:
        long = long.update_usage(usage[:n_long])
    out = torch.cat(readouts, 0)
    return out.view(out.shape[0], out.shape[1], h, w), dataclasses.replace(mem, work=work, long=long)


def locality_prior(sigma: float, h: int, w: int, start: int, device: torch.device) -> Locality:
    """A Gaussian prior on displacement between a query and a working-memory entry: log-weight
    -d^2 / (2 sigma^2) with d the distance in units of the feature grid's diagonal. Working memory
    holds whole frames of the query's grid (the sequence's frames share one size); long-term
    prototypes (before ``start``) have no single position and get no prior."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1) / float(h * h + w * w) ** 0.5
    d2 = torch.cdist(pos, pos).pow_(2)
    return Locality(start=start, bias=d2.mul_(-0.5 / sigma**2).to(device))


def _group_values(work: KVStore, long: KVStore | None, gi: int) -> GroupValues:
    """Group gi's entries on the key axis [long | work]: a suffix of each store (values are end-aligned)."""
    n_long = 0 if long is None else long.size
    spans, values = [], []
    if long is not None and gi < long.num_groups:
        spans.append((n_long - long.value_size(gi), n_long))
        values.append(long.values[gi])
    total = n_long + work.size
    start = total - work.value_size(gi)
    if spans and spans[-1][1] == start:
        spans[-1] = (spans[-1][0], total)
    else:
        spans.append((start, total))
    values.append(work.values[gi])
    return GroupValues(tuple(spans), tuple(values))


def add(mem: Memory, cfg: MemoryConfig, key: torch.Tensor, shrinkage: torch.Tensor,
        selection: torch.Tensor, value: torch.Tensor, num_objects: int) -> Memory:
    """Add one memory frame. key/selection [1, Ck, h, w], shrinkage [1, 1, h, w], value [K, Cv, h, w]."""
    hw = key.shape[-2] * key.shape[-1]
    work = mem.work.add_keys(key.flatten(2), shrinkage.flatten(2),
                             selection.flatten(2) if cfg.enable_long_term else None)
    work = work.add_object_values(value.flatten(2), list(range(num_objects)))
    mem = dataclasses.replace(mem, work=work, hw=hw)
    if cfg.enable_long_term and work.size >= cfg.max_mid_term_frames * hw:
        long = mem.long
        limit = cfg.max_long_term_elements - cfg.num_prototypes
        if long.size >= limit:
            long = long.remove_least_used(limit)
        mem = _consolidate(dataclasses.replace(mem, long=long), cfg)
    return mem


def _consolidate(mem: Memory, cfg: MemoryConfig) -> Memory:
    """Move working-memory frames (all but the first and the newest min-1) into long-term prototypes."""
    work, hw = mem.work, mem.hw
    total = work.size
    start, end = hw, total - (cfg.min_mid_term_frames - 1) * hw
    cand_values: list[torch.Tensor | None] = []
    for gv in work.values:
        g_start = total - gv.shape[-1]
        lo = max(start, g_start)
        cand_values.append(gv[:, :, lo - g_start:end - g_start] if lo < end else None)
    key, shrink, sel, usage = work.sliced(start, end)
    p_key, p_values, p_shrink = _potentiate(key, shrink, sel, usage, cand_values, cfg.num_prototypes)
    keep = torch.ones(total, dtype=torch.bool, device=key.device)
    keep[start:end] = False
    long = mem.long.add_keys(p_key, p_shrink, None).add_group_values(p_values, work.groups)
    return dataclasses.replace(mem, work=work.keep(keep), long=long)


def _potentiate(key: torch.Tensor, shrink: torch.Tensor | None, sel: torch.Tensor | None,
                usage: torch.Tensor, cand_values: list[torch.Tensor | None],
                num_prototypes: int) -> tuple[torch.Tensor, list[torch.Tensor | None], torch.Tensor | None]:
    """Pick the most-used candidates as prototypes; their values and shrinkage are
    softmax-weighted mixtures of all candidates ("memory potentiation").

    Prototype indices are put in ascending candidate order so that each group's
    valid prototypes form a suffix, keeping group values aligned to the key axis.
    """
    n = key.shape[-1]
    _, top = torch.topk(usage.flatten(), k=min(num_prototypes, n), sorted=True)
    idx, _ = torch.sort(top)
    p_key = key[:, :, idx]
    p_sel = sel[:, :, idx] if sel is not None else None
    sim = similarity(key, shrink, p_key, p_sel)
    affinities: list[torch.Tensor | None] = []
    for gv in cand_values:
        valid = idx >= (n - gv.shape[-1]) if gv is not None else None
        aff = full_softmax(sim[:, -gv.shape[-1]:, valid]) if gv is not None else None
        affinities.append(aff if aff is not None and aff.shape[-1] > 0 else None)
    p_values = [readout(a, gv) if a is not None and gv is not None else None
                for a, gv in zip(affinities, cand_values)]
    first = affinities[0]
    p_shrink = readout(first, shrink) if shrink is not None and first is not None else None
    return p_key, p_values, p_shrink
