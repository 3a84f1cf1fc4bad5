"""A key/value memory store as an immutable value.

Keys (and shrinkage, selection, usage counts) are shared by all objects.
Values are kept per *object group*: the objects first annotated on the same
frame. A group that joined later has values only for the newest keys, so
every group's values are aligned to the END of the key axis; every operation
here keeps that invariant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

_LIFE_START = 1e-7


@dataclass(frozen=True)
class KVStore:
    """key [1, Ck, N]; shrinkage [1, 1, N]; selection [1, Ck, N] or None;
    values[g] [n_g, Cv, N_g] with N_g <= N; groups[g] = 0-based object indices;
    use_count / life_count [1, 1, N] when usage is counted."""

    count_usage: bool
    key: torch.Tensor | None = None
    shrinkage: torch.Tensor | None = None
    selection: torch.Tensor | None = None
    values: tuple[torch.Tensor, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    use_count: torch.Tensor | None = None
    life_count: torch.Tensor | None = None
    # Counts the operations that drop elements (keep): while it stands still every tensor only grew at
    # its end, so a checkpoint can carry just the new columns (state_delta).
    epoch: int = 0
    # Lineage of the key elements, ids [N] int64 on CPU numbered as they are added (next_id is the next
    # one): after a drop a checkpoint delta names which of its base's elements were kept instead of
    # resending the store. Not part of the arithmetic; None (a restored store) numbers them 0..N-1.
    ids: torch.Tensor | None = None
    next_id: int = 0

    @property
    def size(self) -> int:
        return 0 if self.key is None else int(self.key.shape[-1])

    @property
    def num_groups(self) -> int:
        return len(self.values)

    def value_size(self, group: int) -> int:
        return int(self.values[group].shape[-1])

    def usage(self) -> torch.Tensor:
        """Normalised usage use_count / life_count, [1, 1, N]."""
        if self.use_count is None or self.life_count is None:
            raise RuntimeError("this store does not count usage")
        return self.use_count / self.life_count

    def lineage(self) -> tuple[torch.Tensor, int]:
        """(ids [N] int64 of the key elements, increasing along the key axis; the next id to give)."""
        if self.ids is None:
            return torch.arange(self.size, dtype=torch.int64), self.size
        return self.ids, self.next_id

    def add_keys(self, key: torch.Tensor, shrinkage: torch.Tensor | None,
                 selection: torch.Tensor | None) -> KVStore:
        """Append n key elements (values are appended separately)."""
        n = key.shape[-1]
        ids, next_id = self.lineage()
        use_count, life_count = self.use_count, self.life_count
        if self.count_usage:
            zeros = torch.zeros((1, 1, n), dtype=torch.float32, device=key.device)
            use_count = _cat(use_count, zeros)
            life_count = _cat(life_count, zeros + _LIFE_START)
        return dataclasses.replace(
            self, key=_cat(self.key, key), shrinkage=_cat(self.shrinkage, shrinkage),
            selection=_cat(self.selection, selection), use_count=use_count, life_count=life_count,
            ids=torch.cat([ids, torch.arange(next_id, next_id + n, dtype=torch.int64)]), next_id=next_id + n)

    def add_object_values(self, value: torch.Tensor, objects: list[int]) -> KVStore:
        """Append one memory frame's values [K, Cv, n]; objects not yet in a group form a new one."""
        values = list(self.values)
        seen: set[int] = set()
        for gi, group in enumerate(self.groups):
            values[gi] = torch.cat([values[gi], value[list(group)]], -1)
            seen.update(group)
        groups = list(self.groups)
        fresh = tuple(o for o in objects if o not in seen)
        if fresh:
            values.append(value[list(fresh)])
            groups.append(fresh)
        return dataclasses.replace(self, values=tuple(values), groups=tuple(groups))

    def add_group_values(self, values: list[torch.Tensor | None], groups: tuple[tuple[int, ...], ...]) -> KVStore:
        """Append per-group values (None = nothing for that group, only trailing groups)."""
        out = list(self.values)
        for gi, gv in enumerate(values):
            if gv is None:
                continue
            if gi < len(out):
                out[gi] = torch.cat([out[gi], gv], -1)
            else:
                out.append(gv)
        return dataclasses.replace(self, values=tuple(out), groups=groups[:len(out)])

    def update_usage(self, usage: torch.Tensor) -> KVStore:
        """Add usage [N] to the use counts and one to every life count."""
        if not self.count_usage or self.use_count is None or self.life_count is None:
            return self
        return dataclasses.replace(self, use_count=self.use_count + usage.view_as(self.use_count),
                                   life_count=self.life_count + 1)

    def keep(self, mask: torch.Tensor) -> KVStore:
        """Keep the key elements where mask [N] (bool) is true; values follow their keys."""
        values = tuple(gv[:, :, mask[-gv.shape[-1]:]] for gv in self.values)
        ids, next_id = self.lineage()
        return dataclasses.replace(
            self, key=_sel(self.key, mask), shrinkage=_sel(self.shrinkage, mask),
            selection=_sel(self.selection, mask), values=values,
            use_count=_sel(self.use_count, mask), life_count=_sel(self.life_count, mask), epoch=self.epoch + 1,
            ids=ids[mask.cpu()], next_id=next_id)

    def remove_least_used(self, max_size: int) -> KVStore:
        """Drop the least-used elements down to at most max_size (ties at the cut drop too)."""
        if self.size <= max_size:
            return self  # XMem would index an empty top-k here; nothing needs to go
        usage = self.usage().flatten()
        low, _ = torch.topk(usage, k=self.size - max_size, largest=False, sorted=True)
        return self.keep(usage > low[-1])

    def sliced(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor | None,
                                                    torch.Tensor | None, torch.Tensor]:
        """key, shrinkage, selection, usage over key elements [start, end)."""
        assert self.key is not None
        sl = slice(start, end)
        return (self.key[:, :, sl], _slc(self.shrinkage, sl), _slc(self.selection, sl), self.usage()[:, :, sl])


def _cat(old: torch.Tensor | None, new: torch.Tensor | None) -> torch.Tensor | None:
    if new is None:
        return old
    return new if old is None else torch.cat([old, new], -1)


def _sel(t: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[:, :, mask]


def _slc(t: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
    return None if t is None else t[:, :, sl]
