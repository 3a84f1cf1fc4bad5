"""Training clips from real sequences, and the pieces every clip source shares.

A clip is T frames cropped to C x C with up to K objects that are all present on frame 0 (that is
the frame whose mask the model is given); other objects become background. Objects may leave or
vanish in later frames: the model must learn to let them end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.training.augment import crop_affine, is_colour, jitter_affine, photometric, warp
from service.training.config import AugmentConfig
from service.training.sources import Frames

CROP_TRIES = 5


@dataclass(frozen=True)
class RawClip:
    """frames uint8 [T, C, C, 3]; labels uint8 [T, C, C] (0 = background, 1..num_objects)."""

    frames: np.ndarray
    labels: np.ndarray
    num_objects: int
    source: str


def present_objects(label: np.ndarray, min_pixels: int) -> list[int]:
    """Object ids with at least ``min_pixels`` pixels in an index mask [H, W]."""
    ids, counts = np.unique(label, return_counts=True)
    return [int(i) for i, c in zip(ids, counts) if i != 0 and c >= min_pixels]


def choose_objects(first: np.ndarray, max_objects: int, min_pixels: int, rng: np.random.Generator) -> list[int]:
    """Up to ``max_objects`` ids visible on the first (cropped) frame, in random order."""
    ids = present_objects(first, min_pixels)
    rng.shuffle(ids)
    return ids[:max_objects]


def relabel(labels: np.ndarray, ids: list[int]) -> np.ndarray:
    """labels [T, H, W]: ids[i] -> i + 1, everything else -> 0."""
    lut = np.zeros(256, np.uint8)
    for i, obj in enumerate(ids):
        lut[obj] = i + 1
    return lut[labels]


def object_centre(label: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """A crop centre (x, y): a random pixel of a random object, pulled part-way to the image centre
    so that crops show context as well as the object."""
    h, w = label.shape
    ids = present_objects(label, 1)
    if not ids:
        return w / 2, h / 2
    ys, xs = np.nonzero(label == ids[int(rng.integers(len(ids)))])
    k = int(rng.integers(len(xs)))
    u = rng.uniform(0, 0.5)
    return float(xs[k] + u * (w / 2 - xs[k])), float(ys[k] + u * (h / 2 - ys[k]))


def finish(frames: np.ndarray, labels: np.ndarray, source: str, aug: AugmentConfig, max_objects: int,
           rng: np.random.Generator, colour: bool) -> RawClip | None:
    """Choose the objects on frame 0, relabel, apply photometric jitter; None if frame 0 has none."""
    ids = choose_objects(labels[0], max_objects, aug.min_pixels, rng)
    if not ids:
        return None
    frames = photometric(frames, rng, aug.intensity, aug.noise, colour)
    return RawClip(frames, relabel(labels, ids), len(ids), source)


def frame_indices(labels: np.ndarray, length: int, max_gap: int, reverse: float,
                  rng: np.random.Generator) -> list[int] | None:
    """``length`` frame indices with random gaps in [1, max_gap], starting on a frame with an object;
    walked backwards with probability ``reverse``. None when no start fits."""
    n = labels.shape[0]
    gap = max(1, min(max_gap, (n - 1) // max(length - 1, 1)))
    steps = rng.integers(1, gap + 1, size=length - 1) if n >= length else np.ones(length - 1, int)
    offsets = np.concatenate([[0], np.cumsum(steps)])
    offsets = np.minimum(offsets, n - 1)  # sequences shorter than the clip repeat their last frame
    has_object = labels.reshape(n, -1).max(1) > 0
    backward = rng.random() < reverse
    for direction in ((-1, 1) if backward else (1, -1)):
        starts = [s for s in range(n) if has_object[s] and 0 <= s + direction * offsets[-1] < n]
        if starts:
            s = starts[int(rng.integers(len(starts)))]
            return [int(s + direction * o) for o in offsets]
    return None


def sequence_clip(data: Frames, length: int, max_gap: int, crop: int, aug: AugmentConfig,
                  max_objects: int, rng: np.random.Generator) -> RawClip | None:
    """A clip of a real sequence: one crop for the whole clip plus a small per-frame jitter."""
    idx = frame_indices(data.labels, length, max_gap, aug.reverse, rng)
    if idx is None:
        return None
    images, labels = data.images[idx], data.labels[idx]
    colour = is_colour(images[0])
    for _ in range(CROP_TRIES):
        zoom = float(np.exp(rng.uniform(*np.log(aug.sequence_zoom))))
        base = crop_affine(labels.shape[1:], crop, zoom, object_centre(labels[0], rng),
                           rng.uniform(-aug.rotate, aug.rotate) / 2, rng.random() < aug.flip)
        out = [warp(im, lab, _jitter(crop, aug, rng) @ base, crop) for im, lab in zip(images, labels)]
        frames, labs = np.stack([o[0] for o in out]), np.stack([o[1] for o in out])
        clip = finish(frames, labs, "real", aug, max_objects, rng, colour)
        if clip is not None:
            return clip
    return None


def _jitter(crop: int, aug: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    j = aug.sequence_jitter
    return jitter_affine(crop, rng, rotate=j * 100, shear=0.0, translate=j, scale=j)
