"""Synthetic training sequences: moving, deforming textured shapes over a textured background.

Medical-looking variety the real sets lack: low-contrast objects, ultrasound-like speckle,
Gaussian noise and blur, grey or colour, occlusion between objects, objects that leave the frame
and objects that shrink away to nothing (as structures end in a volume). Three kinds of object:
star-shaped blobs, blobs in several pieces (edema, lesions cut by a slice) and thin branching
tubes (vessels, neurites); a camera pan moves everything at once by up to a tenth of the frame
per step (endoscopy-like large motion). Everything is drawn from the generator passed in, so a
clip is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from service.training.augment import rotation, translation
from service.training.clips import RawClip, finish
from service.training.config import AugmentConfig

HARMONICS = 4
POINTS = 64


@dataclass(frozen=True)
class Shape:
    """A star-shaped object: centre (x, y), radius, harmonic amplitudes/phases and their motion.

    velocity px/frame, spin deg/frame, growth = log scale change per frame, drift = change of the
    harmonic amplitudes per frame, vanish_at = frame by which the object has shrunk to nothing."""

    centre: np.ndarray
    radius: float
    amps: np.ndarray
    phases: np.ndarray
    velocity: np.ndarray
    spin: float
    growth: float
    drift: np.ndarray
    vanish_at: float | None
    level: float
    texture: np.ndarray
    parts: np.ndarray
    tube: np.ndarray | None = None
    width: float = 0.0


def _parts(rng: np.random.Generator) -> np.ndarray:
    """[P, 3] (dx, dy, scale) of the pieces in radius units; the first piece is the blob itself."""
    extra = int(rng.integers(1, 4)) if rng.random() < 0.2 else 0
    offsets = [[0.0, 0.0, 1.0]] + [[*rng.uniform(-1.6, 1.6, 2), rng.uniform(0.3, 0.7)] for _ in range(extra)]
    return np.array(offsets)


def _tube(rng: np.random.Generator) -> np.ndarray | None:
    """Thin branching structure: [B, N, 2] polylines in radius units (trunk then branches), or None."""
    if rng.random() >= 0.15:
        return None
    steps = rng.normal(0, 0.35, (12, 2)) + np.array([0.3, 0.0])
    trunk = np.cumsum(steps, 0) - np.cumsum(steps, 0).mean(0)
    lines = [trunk]
    for _ in range(int(rng.integers(0, 3))):
        start = trunk[int(rng.integers(2, 10))]
        lines.append(start + np.cumsum(rng.normal(0, 0.3, (12, 2)) + rng.normal(0, 0.3, 2), 0))
    return np.stack(lines)


def fractal_noise(size: int, rng: np.random.Generator, channels: int, octaves: int = 4) -> np.ndarray:
    """Smooth random texture [size, size, channels] in 0..1 (sum of upsampled random grids)."""
    out = np.zeros((size, size, channels), np.float32)
    for o in range(octaves):
        cells = 2 ** (o + 1) + 1
        grid = rng.random((cells, cells, channels)).astype(np.float32)
        up = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, channels)
        out += up * 0.6 ** o
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def make_shape(crop: int, rng: np.random.Generator, channels: int, bg_level: float, length: int) -> Shape:
    leaving = rng.random() < 0.25
    speed = rng.uniform(0.06, 0.14) if leaving else rng.uniform(0.0, 0.03)
    angle = rng.uniform(0, 2 * np.pi)
    contrast = rng.uniform(0.06, 0.45) * rng.choice([-1.0, 1.0])
    tex = fractal_noise(crop, rng, channels) * rng.uniform(0.05, 0.35)
    vanish = rng.uniform(1.5, length) if rng.random() < 0.2 else None
    tube = _tube(rng)
    return Shape(centre=rng.uniform(0.2, 0.8, 2) * crop, radius=rng.uniform(0.06, 0.22) * crop,
                 amps=rng.uniform(-0.3, 0.3, HARMONICS) / np.arange(2, 2 + HARMONICS),
                 phases=rng.uniform(0, 2 * np.pi, HARMONICS),
                 velocity=speed * crop * np.array([np.cos(angle), np.sin(angle)]),
                 spin=rng.uniform(-6, 6), growth=rng.uniform(-0.04, 0.04), drift=rng.normal(0, 0.02, HARMONICS),
                 vanish_at=vanish, level=float(np.clip(bg_level + contrast, 0.05, 0.95)), texture=tex,
                 parts=_parts(rng), tube=tube, width=rng.uniform(0.008, 0.03) * crop)


def pose(s: Shape, t: int, pan: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Centre [2], size (radius after growth and vanishing) and 2x2 rotation of ``s`` at frame ``t``."""
    size = s.radius * np.exp(s.growth * t)
    if s.vanish_at is not None:
        size *= max(0.0, 1 - t / s.vanish_at)
    return s.centre + s.velocity * t + pan, float(size), rotation(s.spin * t)[:2, :2]


def outline(s: Shape, t: int, pan: np.ndarray) -> list[np.ndarray]:
    """Polygons [POINTS, 2] (x, y), one per piece, of blob ``s`` at frame ``t`` under camera offset ``pan``."""
    centre, size, spin = pose(s, t, pan)
    theta = np.linspace(0, 2 * np.pi, POINTS, endpoint=False)
    amps = s.amps + s.drift * t
    n = np.arange(2, 2 + HARMONICS)[:, None]
    r = np.maximum(1 + (amps[:, None] * np.cos(n * theta + s.phases[:, None])).sum(0), 0.2)
    turn = np.deg2rad(s.spin * t)
    ring = np.stack([r * np.cos(theta + turn), r * np.sin(theta + turn)], 1)
    return [centre + size * (spin @ p[:2]) + size * p[2] * ring for p in s.parts]


def object_mask(s: Shape, t: int, pan: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary mask uint8 [C, C] of shape ``s`` at frame ``t`` and the 3x3 motion of its texture."""
    centre, size, spin = pose(s, t, pan)
    motion = translation(*centre) @ rotation(s.spin * t) @ translation(*-s.centre)
    mask = np.zeros((crop, crop), np.uint8)
    if s.tube is None:
        polys = [np.round(p * 16).astype(np.int32) for p in outline(s, t, pan)]
        cv2.fillPoly(mask, polys, 1, lineType=cv2.LINE_8, shift=4)
    elif size > 0:
        lines = [np.round((centre + size * line @ spin.T) * 16).astype(np.int32) for line in s.tube]
        cv2.polylines(mask, lines, False, 1, thickness=max(1, int(round(s.width))), lineType=cv2.LINE_8, shift=4)
    return mask, motion


def render_frame(shapes: list[Shape], background: np.ndarray, t: int, crop: int,
                 pan: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """image float [C, C, ch] in 0..1 and index mask uint8 [C, C] (later shapes occlude earlier)."""
    offset = np.zeros(2) if pan is None else pan
    image = background.copy()
    if pan is not None:
        shift = translation(*pan)[:2]
        image = cv2.warpAffine(background, shift, (crop, crop), borderMode=cv2.BORDER_REFLECT).reshape(image.shape)
    label = np.zeros((crop, crop), np.uint8)
    for k, s in enumerate(shapes):
        mask, motion = object_mask(s, t, offset, crop)
        if not mask.any():
            continue
        tex = cv2.warpAffine(s.texture, motion[:2], (crop, crop), borderMode=cv2.BORDER_REFLECT)
        tex = tex.reshape(crop, crop, -1)
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.8)[..., None]
        image = image * (1 - alpha) + (s.level + tex - tex.mean()) * alpha
        label[mask > 0] = k + 1
    return image, label


def degrade(image: np.ndarray, rng: np.random.Generator, speckle: float, sigma: float,
            blur: float) -> np.ndarray:
    """Ultrasound-like multiplicative speckle (gamma noise, slightly correlated), Gaussian noise, blur."""
    if speckle > 0:
        looks = 1 / speckle
        grain = rng.gamma(looks, 1 / looks, image.shape[:2]).astype(np.float32)
        image = image * cv2.GaussianBlur(grain, (3, 3), 0.7)[..., None]
    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur).reshape(image.shape)
    return image + rng.normal(0, sigma, image.shape).astype(np.float32)


def synthetic_clip(length: int, crop: int, aug: AugmentConfig, max_objects: int,
                   rng: np.random.Generator) -> RawClip | None:
    """A clip of ``length`` frames [C, C, 3] with 1..max_objects shapes, all visible on frame 0."""
    colour = rng.random() < 0.4
    channels = 3 if colour else 1
    bg_level = rng.uniform(0.1, 0.7)
    background = bg_level + (fractal_noise(crop, rng, channels) - 0.5) * rng.uniform(0.1, 0.5)
    shapes = [make_shape(crop, rng, channels, bg_level, length) for _ in range(int(rng.integers(1, max_objects + 1)))]
    speckle = rng.uniform(0.1, 0.8) if rng.random() < 0.5 else 0.0
    sigma, blur = rng.uniform(0, 0.06), (rng.uniform(0.5, 1.5) if rng.random() < 0.3 else 0.0)
    # Camera pan: everything moves together, fast (colonoscopy-like), 30 % of clips.
    pan_speed = rng.uniform(0.03, 0.1) * crop * rng.choice([-1.0, 1.0], 2) if rng.random() < 0.3 else np.zeros(2)
    frames, labels = [], []
    for t in range(length):
        image, label = render_frame(shapes, background, t, crop, pan_speed * t if pan_speed.any() else None)
        image = degrade(image, rng, speckle, sigma, blur)
        frames.append(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8).reshape(crop, crop, channels))
        labels.append(label)
    video = np.stack(frames)
    if not colour:
        video = np.repeat(video, 3, axis=3)
    return finish(video, np.stack(labels), "synthetic", aug, max_objects, rng, colour)
