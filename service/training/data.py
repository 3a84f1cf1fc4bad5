"""Batches of training clips, a pure function of (seed, step).

Each clip of step s, slot i draws from ``numpy.random.default_rng([seed, s, i])``, so any step can
be regenerated on its own: resuming from a checkpoint needs no data-loader state, and a run is
reproducible clip for clip. Clips in a batch share T (the stage's schedule) and are padded to the
largest object count among them; ``valid`` marks the real objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from service.engine.preprocess import image_tensor, plan_geometry
from service.training.clips import RawClip, sequence_clip
from service.training.config import TrainConfig
from service.training.pseudo import pseudo_clip
from service.training.sources import DataSources
from service.training.synthetic import synthetic_clip
from service.training.tissue import tissue_clip

MAX_TRIES = 20
GENERATED = ("synthetic", "tissue")  # made on the fly; need no data root


@dataclass(frozen=True)
class ClipBatch:
    """images [B, T, 3, C, C] ImageNet-normalised; labels [B, T, C, C] int64 (0 = background,
    1..K); valid [B, K] bool (False = padding object); sources: where each clip came from."""

    images: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    sources: tuple[str, ...]

    @property
    def num_objects(self) -> int:
        return int(self.valid.shape[1])

    def first_masks(self) -> torch.Tensor:
        """One-hot masks of frame 0, [B, K, C, C] float."""
        return one_hot(self.labels[:, 0], self.num_objects)

    def to(self, device: torch.device | str) -> ClipBatch:
        return ClipBatch(self.images.to(device), self.labels.to(device), self.valid.to(device), self.sources)


def one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """labels [..., H, W] int -> [..., K, H, W] float (background dropped)."""
    ids = torch.arange(1, k + 1, device=labels.device).view(k, 1, 1)
    return (labels.unsqueeze(-3) == ids).float()


def normalise(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, C, C, 3] -> [T, 3, C, C], through the engine's own preprocessing (no resize, no pad)."""
    geo = plan_geometry(frames.shape[1], frames.shape[2], -1)
    return torch.cat([image_tensor(f, geo, torch.device("cpu")) for f in frames])


class ClipSampler:
    """Makes the batch of any step from the config's stage schedule and data mix."""

    def __init__(self, cfg: TrainConfig, data: DataSources | None) -> None:
        self.cfg = cfg
        self.data = data

    def schedule(self, step: int) -> tuple[str, dict[str, float], int, int]:
        """(stage name, available mix, clip length, max gap) at ``step``."""
        _, stage, within = self.cfg.stage_at(step)
        progress = within / max(stage.iterations, 1)
        mix = {s: w for s, w in stage.mix if s in GENERATED or (self.data is not None and self.data.available(s))}
        if not mix:
            mix = {"synthetic": 1.0}
        return stage.name, mix, stage.clip_length.at(progress), stage.max_gap.at(progress)

    def clip(self, step: int, slot: int) -> RawClip:
        _, mix, length, gap = self.schedule(step)
        rng = np.random.default_rng([self.cfg.seed, step, slot])
        names, weights = list(mix), np.array(list(mix.values()))
        for _ in range(MAX_TRIES):
            source = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            clip = self._draw(source, length, gap, rng)
            if clip is not None:
                return clip
        clip = None
        while clip is None:  # synthetic clips place every object on frame 0; this ends at once
            clip = synthetic_clip(length, self.cfg.resolution, self.cfg.augment, self.cfg.num_objects, rng)
        return clip

    def _draw(self, source: str, length: int, gap: int, rng: np.random.Generator) -> RawClip | None:
        c, aug, k = self.cfg.resolution, self.cfg.augment, self.cfg.num_objects
        if source == "tissue":
            return tissue_clip(length, c, aug, k, rng)
        if source == "synthetic" or self.data is None:
            return synthetic_clip(length, c, aug, k, rng)
        data = self.data.load(self.data.pick(source, rng))
        if source == "static":
            return pseudo_clip(data, length, c, aug, k, rng)
        return sequence_clip(data, length, gap, c, aug, k, rng)

    def batch(self, step: int) -> ClipBatch:
        clips = [self.clip(step, i) for i in range(self.cfg.batch_size)]
        k = max(c.num_objects for c in clips)
        images = torch.stack([normalise(c.frames) for c in clips])
        labels = torch.from_numpy(np.stack([c.labels for c in clips]).astype(np.int64))
        valid = torch.tensor([[i < c.num_objects for i in range(k)] for c in clips])
        return ClipBatch(images, labels, valid, tuple(c.source for c in clips))


class TrainingClips(IterableDataset):
    """The batches of steps [start, stop). In a DataLoader with N workers, worker w makes steps
    start + w, start + w + N, ...; the loader's round-robin order then yields them in step order."""

    def __init__(self, sampler: ClipSampler, start: int, stop: int) -> None:
        super().__init__()
        self.sampler, self.start, self.stop = sampler, start, stop

    def __iter__(self) -> Iterator[ClipBatch]:
        info = get_worker_info()
        offset, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + offset, self.stop, stride):
            yield self.sampler.batch(step)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # N workers x all cores each would starve the training process


def batches(sampler: ClipSampler, start: int, stop: int, workers: int) -> Iterable[ClipBatch]:
    """Batches of steps [start, stop) in order: made in this process (workers = 0) or by workers."""
    clips = TrainingClips(sampler, start, stop)
    if workers <= 0:
        return clips
    return DataLoader(clips, batch_size=None, num_workers=workers, worker_init_fn=_worker_init,
                      prefetch_factor=2, persistent_workers=False)
