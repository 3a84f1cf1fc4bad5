"""Score predictions against the ground truth and aggregate: object -> sequence -> dataset -> overall.

Each level is the plain mean of the level below (README protocol), so a dataset with many
sequences weighs as much as one with a single sequence in the overall number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.evaluation.metrics import BOUND_TH, score
from service.evaluation.protocol import Protocol


@dataclass(frozen=True)
class Mean:
    """Mean J and F over ``count`` items (count 0: nothing was scored, j = f = nan)."""

    j: float
    f: float
    count: int

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    @staticmethod
    def of(items: Sequence[Mean]) -> Mean:
        """Mean of the means that scored anything (empty ones are left out, not counted as 0)."""
        kept = [m for m in items if m.count > 0]
        if not kept:
            return Mean(float("nan"), float("nan"), 0)
        return Mean(float(np.mean([m.j for m in kept])), float(np.mean([m.f for m in kept])), len(kept))


@dataclass(frozen=True)
class ObjectScore:
    """One object's per-frame J and F on its scored frames (frame names, in order)."""

    object_id: int
    frames: tuple[str, ...]
    j: tuple[float, ...]
    f: tuple[float, ...]

    @property
    def mean(self) -> Mean:
        if not self.frames:
            return Mean(float("nan"), float("nan"), 0)
        return Mean(float(np.mean(self.j)), float(np.mean(self.f)), len(self.frames))


@dataclass(frozen=True)
class SequenceScore:
    name: str
    dataset: str
    protocol: str
    objects: tuple[ObjectScore, ...]

    @property
    def mean(self) -> Mean:
        return Mean.of([o.mean for o in self.objects])


@dataclass(frozen=True)
class Summary:
    """One protocol's result: per sequence, per dataset (sorted by name) and overall."""

    protocol: str
    sequences: tuple[SequenceScore, ...]
    datasets: Mapping[str, Mean]
    overall: Mean


def score_sequence(name: str, dataset: str, protocol: Protocol, annotations: Mapping[str, np.ndarray],
                   predictions: Mapping[str, np.ndarray], bound_th: float = BOUND_TH) -> SequenceScore:
    """Per-object scores. annotations / predictions: frame name -> index mask [H, W];
    a frame missing from predictions counts as an empty prediction."""
    objects = []
    for obj, frames in sorted(protocol.scored.items()):
        js, fs = [], []
        for frame in frames:
            gt = annotations[frame] == obj
            pred = predictions.get(frame)
            s = score(np.zeros_like(gt) if pred is None else pred == obj, gt, bound_th)
            js.append(s.j)
            fs.append(s.f)
        objects.append(ObjectScore(obj, tuple(frames), tuple(js), tuple(fs)))
    return SequenceScore(name, dataset, protocol.name, tuple(objects))


def summarise(protocol: str, sequences: Sequence[SequenceScore]) -> Summary:
    """Sequence scores -> dataset means (over sequences) -> overall mean (over datasets)."""
    by_dataset: dict[str, list[Mean]] = {}
    for s in sequences:
        by_dataset.setdefault(s.dataset, []).append(s.mean)
    datasets = {d: Mean.of(means) for d, means in sorted(by_dataset.items())}
    return Summary(protocol, tuple(sequences), datasets, Mean.of(list(datasets.values())))
