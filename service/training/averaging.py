"""Averaging the weights of several checkpoints of one run (stochastic weight averaging, offline).

The last checkpoints of a run with a decaying learning rate sit around one minimum; their mean
often generalises better than any one of them and is far less sensitive to which step a small
dev subset happens to favour. Floating-point tensors (weights and BatchNorm statistics) are
averaged; integer buffers (BatchNorm's batch counter) are taken from the newest checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from service.engine.repo import ModelRepo
from service.errors import InvalidInput
from service.training.checkpoints import PREFIX, list_checkpoints, load


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes (ints: the last one's)."""
    if not states:
        raise InvalidInput("nothing to average: no checkpoints given")
    keys = set(states[0])
    for s in states[1:]:
        if set(s) != keys or any(s[k].shape != states[0][k].shape for k in keys):
            raise InvalidInput("checkpoints to average must come from one architecture")
    out: dict[str, torch.Tensor] = {}
    for k, last in states[-1].items():
        if last.is_floating_point():
            out[k] = torch.stack([s[k].double() for s in states]).mean(0).to(last.dtype)
        else:
            out[k] = last.clone()
    return out


def checkpoint_paths(folder: Path, steps: Sequence[int]) -> list[Path]:
    """The checkpoints of ``steps`` under ``folder`` (every step must exist)."""
    found = {int(p.stem[len(PREFIX):]): p for p in list_checkpoints(folder)}
    missing = [s for s in steps if s not in found]
    if missing:
        raise InvalidInput(f"no checkpoint for step(s) {missing} in {folder}; have {sorted(found)}")
    return [found[s] for s in sorted(steps)]


def average_into(folder: Path, steps: Sequence[int], repo_root: Path, like: str, name: str) -> dict[str, Any]:
    """Write repository entry ``name``: the architecture and settings of entry ``like`` with the mean
    weights of the checkpoints of ``steps``; its provenance names them. Returns that record."""
    states = [load(p).model for p in checkpoint_paths(folder, steps)]
    repo = ModelRepo(repo_root)
    base = repo.entry(like)
    meta = {k: v for k, v in base.meta.items() if k not in ("name", "architecture", "memory")}
    record = {"averaged_from": str(folder), "steps": sorted(int(s) for s in steps), "like": like}
    meta["weights"] = "trained"  # the file holds them now, whatever kind ``like`` had
    meta["provenance"] = {**dict(meta.get("provenance") or {}), "checkpoint_average": record}
    repo.write(name, base.spec, average_states(states), meta, memory=dict(base.meta.get("memory") or {}))
    return record
