"""Training data roots in the DAVIS layout: static 2D pairs (one-frame sequences) and real sequences.

Frames and masks are decoded on first use and kept in memory (the shared train set is ~100 MB
decoded). Sampling weights give each dataset a share proportional to the square root of its size,
so large sets dominate less without small ones being repeated endlessly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.engine.preprocess import to_rgb
from service.errors import InvalidInput
from service.evaluation.dataset import SequenceInfo, list_sequences
from service.io.images import IMAGE_SUFFIXES, decode_image, read_mask


@dataclass(frozen=True)
class Frames:
    """One sequence's annotated frames: images uint8 [T, H, W, 3] and index masks uint8 [T, H, W]."""

    images: np.ndarray
    labels: np.ndarray


def check_not_dev(root: Path, forbidden: Sequence[Path]) -> None:
    """Refuse validation data: a root holding protocols.json (the dev set's marker) or the eval root."""
    resolved = root.resolve()
    if (root / "protocols.json").is_file() or any(resolved == Path(f).resolve() for f in forbidden):
        raise InvalidInput(f"{root} is validation data (dev); never train on it")


class DataSources:
    """The static pairs and real sequences of one or more roots, with weighted sampling."""

    def __init__(self, roots: Sequence[Path], forbidden: Sequence[Path] = (),
                 datasets: Sequence[str] = ()) -> None:
        """datasets: keep only sequences whose name starts with one of these prefixes (before "__"),
        e.g. the sets whose licences allow shipping the trained weights."""
        infos: list[SequenceInfo] = []
        for root in roots:
            check_not_dev(Path(root), forbidden)
            infos.extend(list_sequences(Path(root)))
        if datasets:
            infos = [i for i in infos if i.name.split("__", 1)[0] in set(datasets)]
            if not infos:
                raise InvalidInput(f"no training sequence belongs to the datasets {', '.join(datasets)}")
        self.roots = tuple(Path(r) for r in roots)
        self.statics = tuple(i for i in infos if len(i.frame_names) == 1)
        # Only annotated frames can be trained on; sequences need two of them to make a clip.
        self.sequences = tuple(i for i in infos if len(i.frame_names) > 1 and len(i.gt_names) > 1)
        self._weights = {"static": _weights(self.statics), "real": _weights(self.sequences)}
        self._cache: dict[str, Frames] = {}

    def available(self, kind: str) -> bool:
        return len(self.statics if kind == "static" else self.sequences) > 0

    def pick(self, kind: str, rng: np.random.Generator) -> SequenceInfo:
        """A random static pair (kind "static") or real sequence (kind "real")."""
        items = self.statics if kind == "static" else self.sequences
        if not items:
            raise InvalidInput(f"no {kind} training data under {', '.join(map(str, self.roots))}")
        return items[int(rng.choice(len(items), p=self._weights[kind]))]

    def load(self, info: SequenceInfo) -> Frames:
        """The annotated frames of ``info`` (cached)."""
        key = str(info.frames_dir)
        if key not in self._cache:
            self._cache[key] = _read(info)
        return self._cache[key]

    def describe(self) -> dict[str, int]:
        return {"static_pairs": len(self.statics), "sequences": len(self.sequences),
                "sequence_frames": sum(len(s.gt_names) for s in self.sequences)}


def _weights(items: Sequence[SequenceInfo]) -> np.ndarray:
    if not items:
        return np.zeros(0)
    counts: dict[str, int] = {}
    for i in items:
        counts[i.dataset] = counts.get(i.dataset, 0) + 1
    w = np.array([np.sqrt(counts[i.dataset]) / counts[i.dataset] for i in items])
    return w / w.sum()


def _read(info: SequenceInfo) -> Frames:
    files = {p.stem: p for p in info.frames_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    images = [to_rgb(decode_image(files[n].read_bytes(), files[n].name)) for n in info.gt_names]
    masks = {p.stem: p for p in info.annotations_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = [read_mask(masks[n]) for n in info.gt_names]
    if any(m.shape != im.shape[:2] for m, im in zip(labels, images)) or len({m.shape for m in labels}) != 1:
        raise InvalidInput(f"{info.name}: frames and masks differ in size")
    if max(int(m.max()) for m in labels) > 255:
        raise InvalidInput(f"{info.name}: more than 255 object ids")
    return Frames(np.stack(images), np.stack(labels).astype(np.uint8))
