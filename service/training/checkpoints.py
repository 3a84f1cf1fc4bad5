"""Training checkpoints: model, optimiser, RNG states, step and run history in one file.

Files are OUT/checkpoints/step-NNNNNNN.pt (NNNNNNN = the next step to run), written to a temporary
name and renamed, so a run killed mid-write never leaves a truncated "latest" checkpoint.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.errors import InvalidInput

PREFIX = "step-"


@dataclass(frozen=True)
class Snapshot:
    """step: the next step to run; history: eval results so far; best: the best eval (or None);
    wall: seconds of training before this checkpoint (summed over resumes)."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    config: dict[str, Any]
    history: tuple[dict[str, Any], ...] = ()
    best: dict[str, Any] | None = None
    wall: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> dict[str, Any]:
    """Global RNG states (the loop draws from its own generators; these are saved for any
    library code that does not)."""
    out: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                           "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, snap: Snapshot, keep: int) -> Path:
    """Write the snapshot and delete all but the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{PREFIX}{snap.step:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(snap.__dict__, tmp)
    os.replace(tmp, path)
    for old in list_checkpoints(folder)[:-max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in step order."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{PREFIX}*.pt") if p.stem[len(PREFIX):].isdigit())


def load_latest(folder: Path) -> Snapshot | None:
    """The newest checkpoint under ``folder`` (None when there is none)."""
    paths = list_checkpoints(folder)
    return load(paths[-1]) if paths else None


def load(path: Path) -> Snapshot:
    """One checkpoint file."""
    try:
        # weights_only=False: the file holds numpy/python RNG states; it is our own, never downloaded
        raw = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise InvalidInput(f"cannot read checkpoint {path}: {exc}") from None
    raw["history"] = tuple(raw.get("history", ()))
    return Snapshot(**raw)
