"""Checkpoint deltas: what a pass's memory gained since its last checkpoint.

Between consolidations a pass's memory only grows at the end of its key axis (a memory frame every
mem_every frames), so a checkpoint need not rewrite the whole state (about 1.2 MB per memory frame at
480p, 6-10 MB late in a pass): a delta record carries the new columns of the growing tensors, the small
ones that change every frame (usage counts, the hidden state) whole, and the meta; a store that dropped
elements since (a consolidation) names the base columns it kept and carries its new ones. A chain is one full
record (state_codec.encode with a ``chain`` token) and deltas 1..n that name the token and their
position; decode_chain checks both, so a delta can never be applied to a base it was not taken from.

Layout of a delta: DELTA_MAGIC | version u16 | header length u32 | header JSON | blob, as a full record;
each tensor entry has ``op``: "set" (the whole tensor), "append" (columns after the base's ``from``) or
"take" (version 2: the base's columns in ``ranges``, then the columns carried). A store that dropped
elements (a consolidation, long-term pruning) is sent by "take" when the store's lineage ids show which of
the base's elements it kept, so the delta carries only what is new; version 1 readers refuse such a delta
by its version, and a delta with no "take" is still written as version 1.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import torch

from service.engine import state_codec
from service.engine.state import PassState
from service.errors import StateError

DELTA_MAGIC = b"IMOSDLTA"
DELTA_VERSIONS = (1, 2)  # 2: has "take" entries
# More kept ranges than this (heavy long-term pruning) and the tensor is sent whole instead.
MAX_RANGES = 1024
# Tensors that only grow along their last axis between two drops (KVStore.epoch); the rest are set whole.
_GROWING = ("key", "shrinkage", "selection", "values")


@dataclass(frozen=True)
class Chain:
    """The last checkpoint of a pass as deltas need it: the chain token, how many deltas follow the full
    record, each growing tensor's shape and each store's epoch at that checkpoint (no tensor data)."""

    token: str
    seq: int
    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    epochs: tuple[int, int]
    # each store's element ids [N] (KVStore.lineage); tensors, so left out of == and hash
    lineage: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, compare=False)

    @staticmethod
    def describe(state: PassState, token: str, seq: int) -> Chain:
        shapes = tuple((n, tuple(t.shape)) for n, t in state_codec.state_tensors(state).items() if _growing(n))
        mem = state.core.memory
        return Chain(token, seq, shapes, (mem.work.epoch, mem.long.epoch),
                     (mem.work.lineage()[0], mem.long.lineage()[0]))


@dataclass(frozen=True)
class Record:
    """A checkpoint ready to store: kind "full" or "delta", its bytes, and the chain it leaves."""

    kind: str
    data: bytes
    chain: Chain


def new_token() -> str:
    return secrets.token_hex(8)


def next_record(state: PassState, chain: Chain | None, fp16: bool = False, max_deltas: int = 16) -> Record:
    """The next checkpoint of a pass: a delta of ``chain`` while it has fewer than ``max_deltas`` and the
    state continues it, else a full record that starts a new chain."""
    if chain is not None and chain.seq < max_deltas:
        delta = encode_delta(state, chain, fp16)
        if delta is not None:
            return Record("delta", delta, Chain.describe(state, chain.token, chain.seq + 1))
    token = new_token()
    return Record("full", state_codec.encode(state, fp16, chain=token), Chain.describe(state, token, 0))


def _growing(name: str) -> bool:
    return name.split(".")[1] in _GROWING if "." in name else False


def encode_delta(state: PassState, chain: Chain, fp16: bool = False) -> bytes | None:
    """Delta number chain.seq + 1 from the chain's last checkpoint to ``state``. A store that dropped
    elements since (a consolidation: its epoch moved) travels whole, one that only grew by its new
    columns. None when the state does not continue the chain (a tensor vanished or shrank): write it full."""
    mem = state.core.memory
    rewritten = {name for name, now, then in zip(("work", "long"), (mem.work.epoch, mem.long.epoch), chain.epochs)
                 if now != then}
    tensors = state_codec.state_tensors(state)
    base = dict(chain.shapes)
    if not set(base) <= set(tensors):
        return None
    lineage = _lineages(state, chain)
    out: dict[str, torch.Tensor] = {}
    extra: dict[str, dict[str, object]] = {}
    for name, t in tensors.items():
        old = base.get(name)
        store = name.split(".")[0]
        if old is not None and tuple(t.shape[:-1]) != old[:-1]:
            return None
        if old is None:
            out[name], extra[name] = t, {"op": "set"}
        elif store in rewritten:
            out[name], extra[name] = _taken(t, old[-1], lineage.get(store))
        elif t.shape[-1] < old[-1]:
            return None
        else:
            out[name], extra[name] = t[..., old[-1]:], {"op": "append", "from": old[-1]}
    meta = {**state_codec.meta_of(state), "chain": chain.token, "seq": chain.seq + 1}
    version = 2 if any(e["op"] == "take" for e in extra.values()) else 1
    return state_codec.pack(DELTA_MAGIC, meta, out, fp16, extra, version=version)


def _lineages(state: PassState, chain: Chain) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per store: (the base's element ids, the current ones), where the chain knows them."""
    if chain.lineage is None:
        return {}
    mem = state.core.memory
    return {"work": (chain.lineage[0], mem.work.lineage()[0]), "long": (chain.lineage[1], mem.long.lineage()[0])}


def _taken(t: torch.Tensor, base_len: int,
           lineage: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, dict[str, object]]:
    """A tensor [..., N] of a store that dropped elements since the base [..., base_len]: "take" the kept
    base columns and carry the rest, or "set" it whole when the lineage cannot say which were kept.
    Values of a group cover the last columns of the key axis, so both id lists are cut to their ends."""
    if lineage is None or t.shape[-1] > lineage[1].numel() or base_len > lineage[0].numel():
        return t, {"op": "set"}
    base_ids = lineage[0][lineage[0].numel() - base_len:]
    ids = lineage[1][lineage[1].numel() - t.shape[-1]:]
    kept = kept_ranges(base_ids, ids)
    if kept is None or len(kept[1]) > MAX_RANGES:
        return t, {"op": "set"}
    prefix, ranges = kept
    return t[..., prefix:], {"op": "take", "from": base_len, "ranges": ranges}


def kept_ranges(base_ids: torch.Tensor, ids: torch.Tensor) -> tuple[int, list[list[int]]] | None:
    """Which base elements a store kept: (how many of its first elements come from the base, their
    positions in the base as [start, end) ranges). Ids increase along the axis (elements are appended and
    drops keep the order), so the kept ones lead. None if an old id is not in the base."""
    limit = int(base_ids[-1]) if base_ids.numel() else -1
    prefix = int((ids <= limit).sum())
    old = ids[:prefix]
    pos = torch.searchsorted(base_ids, old)
    if prefix and (int(pos[-1]) >= base_ids.numel() or not torch.equal(base_ids[pos], old)):
        return None
    breaks = (torch.nonzero(pos[1:] - pos[:-1] != 1).flatten() + 1).tolist()
    starts = [0, *breaks]
    ends = [*breaks, prefix]
    return prefix, [[int(pos[a]), int(pos[b - 1]) + 1] for a, b in zip(starts, ends) if b > a]


def decode_chain(full: bytes, deltas: list[bytes], device: torch.device | str = "cpu") -> PassState:
    """The state a full record and its deltas (in order) describe; StateError if any does not belong."""
    return restore(full, deltas, device)[0]


def restore(full: bytes, deltas: list[bytes],
            device: torch.device | str = "cpu") -> tuple[PassState, Chain | None]:
    """decode_chain, and the chain a next delta may extend (None when the record starts no chain), so a
    resumed pass goes on writing deltas where the last worker stopped."""
    header, blob = state_codec.unpack(full, state_codec.MAGIC)
    meta = header["meta"]
    tensors = {e["name"]: state_codec.tensor(e, blob, device) for e in header["tensors"]}
    token = meta.get("chain")
    for seq, data in enumerate(deltas, start=1):
        dh, dblob = state_codec.unpack(data, DELTA_MAGIC, DELTA_VERSIONS)
        dm = dh["meta"]
        if token is None or dm.get("chain") != token or dm.get("seq") != seq:
            raise StateError(f"session state delta {seq} does not extend this checkpoint (chain or order mismatch)")
        for entry in dh["tensors"]:
            tensors[entry["name"]] = _apply(entry, state_codec.tensor(entry, dblob, device), tensors)
        meta = dm
    state = state_codec.build(meta, tensors)
    return state, (None if token is None else Chain.describe(state, token, len(deltas)))


def _apply(entry: dict[str, object], part: torch.Tensor, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    name, op = str(entry["name"]), entry.get("op")
    if op == "set":
        return part
    old = tensors.get(name)
    if op not in ("append", "take") or old is None or old.shape[-1] != entry.get("from") \
            or old.shape[:-1] != part.shape[:-1]:
        raise StateError(f"session state delta: tensor {name!r} does not continue its checkpoint")
    if op == "append":
        return torch.cat([old, part], -1)
    return torch.cat([*(old[..., a:b] for a, b in _ranges(entry, old.shape[-1], name)), part], -1)


def _ranges(entry: dict[str, object], n: int, name: str) -> list[tuple[int, int]]:
    """A take entry's kept ranges, checked: increasing, non-empty, within the base's n columns."""
    raw: Any = entry.get("ranges")  # untrusted JSON: a malformed value raises TypeError or ValueError below
    out: list[tuple[int, int]] = []
    last = 0
    try:
        for a, b in raw:
            if not (isinstance(a, int) and isinstance(b, int) and last <= a < b <= n):
                raise ValueError
            out.append((a, b))
            last = b
    except (TypeError, ValueError):
        raise StateError(f"session state delta: tensor {name!r} keeps columns its checkpoint lacks") from None
    return out
