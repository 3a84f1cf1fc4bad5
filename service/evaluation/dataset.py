"""A DAVIS-layout folder: ROOT/JPEGImages/<seq>/<frame>.png and ROOT/Annotations/<seq>/<frame>.png."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import InvalidInput, NotFound
from service.io.images import IMAGE_SUFFIXES, read_frames, read_mask


@dataclass(frozen=True)
class SequenceInfo:
    """One sequence's files. frame_names: stems of JPEGImages in order (frame i <-> frame_names[i]);
    gt_names: stems that have an annotation file (the only frames that can be scored)."""

    name: str
    frames_dir: Path
    annotations_dir: Path
    frame_names: tuple[str, ...]
    gt_names: tuple[str, ...]

    @property
    def dataset(self) -> str:
        """The part of the name before ``__`` (the whole name when there is none)."""
        return self.name.split("__", 1)[0]

    def index(self, frame_name: str) -> int:
        try:
            return self.frame_names.index(frame_name)
        except ValueError:
            raise InvalidInput(f"{self.name}: frame {frame_name!r} is not in JPEGImages") from None

    def read_frames(self) -> list[np.ndarray]:
        """Every frame, uint8 [H, W] or [H, W, 3], in order."""
        return read_frames(self.frames_dir)

    def read_annotations(self) -> dict[str, np.ndarray]:
        """frame name -> index mask [H, W] int64 (0 = background), for the annotated frames."""
        files = {p.stem: p for p in self.annotations_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        return {name: read_mask(files[name]) for name in self.gt_names}


def _stems(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))


def list_sequences(root: Path, pattern: str | None = None) -> list[SequenceInfo]:
    """Sequences under ROOT (names from JPEGImages, sorted), optionally filtered by globs
    (comma-separated: a sequence matching any of them is kept)."""
    images = root / "JPEGImages"
    if not images.is_dir():
        raise NotFound(f"{root} has no JPEGImages folder (expected the DAVIS layout)")
    out = []
    for seq_dir in sorted(p for p in images.iterdir() if p.is_dir()):
        if pattern and not any(fnmatch.fnmatchcase(seq_dir.name, g.strip()) for g in pattern.split(",")):
            continue
        ann_dir = root / "Annotations" / seq_dir.name
        names = _stems(seq_dir)
        gt = tuple(n for n in _stems(ann_dir) if n in names)
        if names and gt:  # a sequence without any annotation cannot be evaluated
            out.append(SequenceInfo(seq_dir.name, seq_dir, ann_dir, names, gt))
    if not out:
        raise NotFound(f"no annotated sequences under {root}" + (f" match {pattern!r}" if pattern else ""))
    return out


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when the file does not exist."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} does not hold a JSON object")
    return data
