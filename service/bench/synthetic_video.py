"""A deterministic synthetic sequence for demos and benchmarks: textured ellipses drifting over noise."""

from __future__ import annotations

import numpy as np


def moving_ellipses(frames: int, height: int, width: int, objects: int = 1,
                    seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """frames uint8 [H, W, 3] and their true index masks [H, W] (objects 1..n)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.integers(0, 60, size=(height, width, 3)).astype(np.float32)
    images, masks = [], []
    for t in range(frames):
        img, mask = base.copy(), np.zeros((height, width), np.uint8)
        for k in range(objects):
            cy = height * (0.3 + 0.4 * (k + 1) / (objects + 1)) + 0.1 * height * np.sin(0.1 * t + k)
            cx = width * (0.2 + 0.6 * (k + 1) / (objects + 1)) + 0.1 * width * np.cos(0.07 * t + k)
            inside = ((yy - cy) / (0.12 * height)) ** 2 + ((xx - cx) / (0.09 * width)) ** 2 <= 1
            img[inside] = 150 + 40 * k + 30 * np.sin(xx[inside] / 3.0)[:, None]
            mask[inside] = k + 1
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        masks.append(mask)
    return images, masks


def moving_ellipse(frames: int, height: int, width: int, objects: int = 1,
                   seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """frames and the index mask of frame 0 only."""
    images, masks = moving_ellipses(frames, height, width, objects, seed)
    return images, masks[0]
