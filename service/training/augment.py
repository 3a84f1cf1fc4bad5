"""Geometric and photometric augmentation for training clips (numpy + OpenCV).

Every geometric change is one source->crop mapping per frame: an affine matrix (crop, zoom,
rotation, flip, per-frame jitter) optionally followed by an elastic displacement field. The image
is resampled bilinearly and the index mask with nearest neighbour through the SAME mapping, so
masks stay aligned with their frames and keep integer labels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def rotation(deg: float) -> np.ndarray:
    """3x3 rotation about the origin."""
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def scaling(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


def crop_affine(src_hw: tuple[int, int], crop: int, zoom: float, centre: tuple[float, float],
                rotate_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """3x3 source->crop matrix: the source's shorter side becomes ``crop * zoom`` pixels and the
    source point ``centre`` (x, y) lands in the middle of the crop."""
    s = crop * zoom / min(src_hw)
    half = crop / 2
    m = translation(half, half) @ rotation(rotate_deg)
    if flip:
        m = m @ scaling(-1, 1)
    return m @ scaling(s, s) @ translation(-centre[0], -centre[1])


def jitter_affine(crop: int, rng: np.random.Generator, rotate: float, shear: float, translate: float,
                  scale: float) -> np.ndarray:
    """A random small affine (3x3) about the crop centre: what moves between two frames."""
    half = crop / 2
    sh = math.tan(math.radians(rng.uniform(-shear, shear)))
    s = math.exp(rng.uniform(-scale, scale))
    t = rng.uniform(-translate, translate, size=2) * crop
    core = rotation(rng.uniform(-rotate, rotate)) @ np.array([[1, sh, 0], [0, 1, 0], [0, 0, 1]]) @ scaling(s, s)
    return translation(half + t[0], half + t[1]) @ core @ translation(-half, -half)


def elastic_field(crop: int, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """Smooth random displacement [2, C, C] in pixels, largest value about ``alpha * crop``.

    Random displacements on a coarse grid (one node per ``sigma * crop`` pixels) upsampled
    bicubically: as smooth as blurring white noise with a Gaussian of that width, but its cost
    does not grow with the kernel size.
    """
    if alpha <= 0:
        return np.zeros((2, crop, crop), np.float32)
    cells = max(2, round(1 / max(sigma, 1e-3))) + 1
    grid = rng.uniform(-1, 1, size=(cells, cells, 2)).astype(np.float32)
    out = cv2.resize(grid, (crop, crop), interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1)
    peak = float(np.abs(out).max()) or 1.0
    return np.ascontiguousarray(out * (alpha * crop / peak))


def warp(image: np.ndarray, label: np.ndarray, matrix: np.ndarray, crop: int,
         field: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """image uint8 [H, W, 3], label int [H, W], matrix 3x3 source->crop, field [2, C, C] or None
    -> image uint8 [C, C, 3], label uint8 [C, C]. Outside the source: black image, background."""
    image, label, matrix = _prescale(image, label, matrix)
    inv = np.linalg.inv(matrix)
    ys, xs = np.mgrid[0:crop, 0:crop].astype(np.float32)
    if field is not None:
        xs, ys = xs + field[0], ys + field[1]
    map_x = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]).astype(np.float32)
    map_y = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]).astype(np.float32)
    img = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lab = cv2.remap(label.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0)
    return img, lab


def _prescale(image: np.ndarray, label: np.ndarray,
              matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shrink big sources with area averaging first: bilinear sampling alone aliases fine texture."""
    s = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    if s >= 0.7:
        return image, label, matrix
    h, w = label.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    label = cv2.resize(label.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
    return image, label, matrix @ scaling(w / nw, h / nh)


def photometric(frames: np.ndarray, rng: np.random.Generator, strength: float, noise: float,
                colour: bool) -> np.ndarray:
    """frames uint8 [T, C, C, 3] -> uint8 with one random brightness/contrast/gamma per clip, a
    smaller change per frame and Gaussian noise. Grey clips stay grey (the same change per channel)."""
    x = frames.astype(np.float32) / 255
    t = int(x.shape[0])
    clip_gain = 1 + rng.uniform(-strength, strength)
    gain = rng.uniform(-strength, strength, size=t) / 3 + clip_gain
    clip_bias = rng.uniform(-strength, strength) / 2
    bias = rng.uniform(-strength, strength, size=t) / 6 + clip_bias
    gamma = math.exp(rng.uniform(-strength, strength))
    x = np.clip(x, 0, 1) ** gamma
    x = x * gain[:, None, None, None] + bias[:, None, None, None]
    if colour:
        x = x * (1 + rng.uniform(-strength, strength, size=3) / 3)
    sd = rng.uniform(0, noise)
    shape = x.shape if colour else x.shape[:3] + (1,)
    x = x + rng.normal(0, sd, size=shape).astype(np.float32)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def is_colour(image: np.ndarray) -> bool:
    """True when an [H, W, 3] image has channels that differ (grey replicated to 3 is not colour)."""
    return image.ndim == 3 and bool(np.any(image[..., 0] != image[..., 1]) or np.any(image[..., 1] != image[..., 2]))
