"""Synthetic tissue clips: a field of look-alike cells slowly changing from frame to frame.

The blob clips teach following one object that stands out; real tissue (serial-section EM,
histology, myocardium) is a mosaic of near-identical compartments separated by thin walls, and
the object to follow is one compartment among many. Here the cells are a power (weighted
Voronoi) diagram of drifting seeds, seen through a smooth domain warp so the walls curve. From
frame to frame every seed drifts a little and its weight changes, so cells grow, shrink and
reshape the way neurites do through a stack of sections; the targets are a few of the cells,
often cut by the image border, and they persist (objects that end are the blob clips' lesson).
Everything is drawn from the generator passed in, so a clip is a pure function of its seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from service.training.clips import RawClip, finish
from service.training.config import AugmentConfig
from service.training.synthetic import degrade, fractal_noise


@dataclass(frozen=True)
class CellField:
    """Seeds [N, 2] (x, y) in pixels with power weights [N] (px^2), their per-frame motion
    (velocity [N, 2], weight change [N]), a smooth warp [2, C, C] (px), the wall half-width (px) and
    the mean distance between seeds (px)."""

    seeds: np.ndarray
    weights: np.ndarray
    velocity: np.ndarray
    weight_rate: np.ndarray
    warp: np.ndarray
    wall: float
    spacing: float


def make_field(crop: int, rng: np.random.Generator) -> CellField:
    """Jittered-grid seeds over the crop plus a margin, so that border cells are cut by the edge."""
    spacing = crop / rng.uniform(3.5, 9.0)
    cells = int(np.ceil(crop / spacing)) + 2
    grid = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), -1).reshape(-1, 2) - 0.5) * spacing
    seeds = grid + rng.uniform(-0.4, 0.4, grid.shape) * spacing
    drift = rng.normal(0, 0.03, 2) * spacing  # sections shift a little as a whole
    warp = (np.stack([fractal_noise(crop, rng, 1, octaves=3)[..., 0] for _ in range(2)]) - 0.5)
    return CellField(seeds=seeds, weights=rng.normal(0, 0.12, len(seeds)) * spacing ** 2,
                     velocity=drift + rng.normal(0, 0.05, seeds.shape) * spacing,
                     weight_rate=rng.normal(0, 0.03, len(seeds)) * spacing ** 2,
                     warp=warp * rng.uniform(0.3, 1.0) * spacing, wall=rng.uniform(0.6, 2.2), spacing=spacing)


def cell_labels(field: CellField, t: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Owning cell index int [C, C] and wall mask bool [C, C] of the diagram at frame ``t``."""
    seeds = field.seeds + field.velocity * t
    weights = field.weights + field.weight_rate * t
    ys, xs = np.mgrid[0:crop, 0:crop].astype(np.float32)
    px = np.stack([xs + field.warp[0], ys + field.warp[1]], -1).reshape(-1, 1, 2)
    power = ((px - seeds[None].astype(np.float32)) ** 2).sum(-1) - weights[None].astype(np.float32)
    two = np.argpartition(power, 1, axis=1)[:, :2]
    p = np.take_along_axis(power, two, 1)
    first = np.where(p[:, 0] <= p[:, 1], two[:, 0], two[:, 1])
    # The bisector of two seeds lies where their power difference is zero; dividing by twice the
    # seed distance turns that difference into a distance in pixels, so walls have an even width.
    gap = np.abs(p[:, 0] - p[:, 1]) / (2 * np.linalg.norm(seeds[two[:, 0]] - seeds[two[:, 1]], axis=1) + 1e-6)
    return first.reshape(crop, crop), (gap < field.wall).reshape(crop, crop)


def render_tissue(owner: np.ndarray, wall: np.ndarray, levels: np.ndarray, texture: np.ndarray,
                  wall_level: float) -> np.ndarray:
    """Image float [C, C, ch]: each cell at its level plus a texture, walls drawn at ``wall_level``."""
    image = levels[owner] + texture
    soft = cv2.GaussianBlur(wall.astype(np.float32), (3, 3), 0.7)[..., None]
    return image * (1 - soft) + wall_level * soft


def _ending(field: CellField, targets: np.ndarray, length: int, rng: np.random.Generator) -> CellField:
    """Some targets end within the clip (a neurite that stops, a cavity sliced past): their weight
    falls until the neighbours take their place. Without these the clips would teach that the
    given object always persists, which is wrong for volumes (and costs dearly where GT is empty)."""
    rate = field.weight_rate.copy()
    for k in targets:
        if rng.random() < 0.3:
            rate[k] = -field.spacing ** 2 * rng.uniform(0.5, 1.0) / rng.uniform(1.0, max(length - 1, 1.5))
    return dataclasses.replace(field, weight_rate=rate)


def tissue_clip(length: int, crop: int, aug: AugmentConfig, max_objects: int,
                rng: np.random.Generator) -> RawClip | None:
    """A clip [T, C, C, 3] whose objects are 1..max_objects cells of a drifting cell field;
    None when no cell is big enough on frame 0 (callers draw again)."""
    colour = rng.random() < 0.25
    channels = 3 if colour else 1
    field = make_field(crop, rng)
    base = rng.uniform(0.35, 0.75)
    levels = (base + rng.normal(0, rng.uniform(0.01, 0.08), (len(field.seeds), channels))).astype(np.float32)
    strength = rng.uniform(0.1, 0.4)
    textures = [(fractal_noise(crop, rng, channels) - 0.5) * strength for _ in range(2)]
    turn = rng.uniform(0.05, 0.25)  # how fast the texture changes: each section shows new detail
    wall_level = float(np.clip(base + rng.choice([-1.0, 1.0], p=[0.8, 0.2]) * rng.uniform(0.25, 0.5), 0, 1))
    speckle, sigma = (rng.uniform(0.05, 0.4) if rng.random() < 0.3 else 0.0), rng.uniform(0, 0.05)
    blur = rng.uniform(0.4, 1.2) if rng.random() < 0.4 else 0.0
    owner0, wall0 = cell_labels(field, 0, crop)
    ids, counts = np.unique(owner0[~wall0], return_counts=True)
    # Targets from the larger half: real targets (neurites, cavities) are rarely the slivers.
    big = ids[counts >= max(aug.min_pixels, crop * crop // 400, int(np.median(counts)))]
    if len(big) == 0:
        return None
    targets = rng.choice(big, size=min(len(big), int(rng.integers(1, max_objects + 1))), replace=False)
    field = _ending(field, targets, length, rng)
    lut = np.zeros(len(field.seeds), np.uint8)
    lut[targets] = np.arange(1, len(targets) + 1)
    frames, labels = [], []
    for t in range(length):
        owner, wall = (owner0, wall0) if t == 0 else cell_labels(field, t, crop)
        texture = (np.cos(turn * t) * textures[0] + np.sin(turn * t) * textures[1]).astype(np.float32)
        image = degrade(render_tissue(owner, wall, levels, texture, wall_level), rng, speckle, sigma, blur)
        frames.append(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8).reshape(crop, crop, channels))
        labels.append(np.where(wall, 0, lut[owner]).astype(np.uint8))
    video = np.stack(frames)
    if not colour:
        video = np.repeat(video, 3, axis=3)
    return finish(video, np.stack(labels), "tissue", aug, max_objects, rng, colour)
