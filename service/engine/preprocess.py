"""Frame and mask preprocessing: ImageNet normalisation, resizing, padding to /16."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Geometry:
    """How frames of size (height, width) map to the network's padded grid.

    (rh, rw): size after resizing; pad = (left, right, top, bottom) zeros added
    to reach multiples of 16, split evenly with the smaller half first.
    """

    height: int
    width: int
    rh: int
    rw: int
    pad: tuple[int, int, int, int]

    @property
    def padded(self) -> tuple[int, int]:
        return self.rh + self.pad[2] + self.pad[3], self.rw + self.pad[0] + self.pad[1]

    @property
    def resized(self) -> bool:
        return (self.rh, self.rw) != (self.height, self.width)


def plan_geometry(height: int, width: int, size: int, max_upscale: int = 0) -> Geometry:
    """size = target shorter side (-1: native); max_upscale > 0 caps the enlargement factor."""
    if size > 0:
        scale = size / min(height, width)
        if max_upscale > 0:
            scale = min(scale, float(max_upscale))
        rh, rw = int(round(height * scale)), int(round(width * scale))
    else:
        rh, rw = height, width
    dh, dw = (-rh) % 16, (-rw) % 16
    return Geometry(height, width, rh, rw, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W] or [H, W, 1|3|4] -> uint8 [H, W, 3]."""
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame[:, :, :3]


def image_tensor(frame: np.ndarray, geo: Geometry, device: torch.device) -> torch.Tensor:
    """uint8 frame [H, W(, C)] -> normalised, resized, padded float32 [1, 3, Hp, Wp]."""
    rgb = np.ascontiguousarray(to_rgb(frame))
    if not rgb.flags.writeable:  # torch warns on read-only buffers (frames decoded from bytes)
        rgb = rgb.copy()
    x = torch.from_numpy(rgb).to(device)
    x = x.permute(2, 0, 1).float() / 255
    mean = torch.tensor(_MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(_STD, device=device).view(3, 1, 1)
    x = ((x - mean) / std).unsqueeze(0)
    if geo.resized:
        x = F.interpolate(x, size=(geo.rh, geo.rw), mode="bilinear", align_corners=False, antialias=True)
    return F.pad(x, geo.pad)


def mask_tensor(index_mask: np.ndarray, num_objects: int, geo: Geometry, device: torch.device) -> torch.Tensor:
    """Index mask [H, W] (0 = background, 1..K) -> one-hot float [K, Hp, Wp] (nearest resize, zero pad)."""
    m = torch.from_numpy(np.ascontiguousarray(index_mask).astype(np.int64)).to(device)
    onehot = torch.stack([(m == k + 1) for k in range(num_objects)]).float()
    if geo.resized:
        onehot = F.interpolate(onehot.unsqueeze(0), size=(geo.rh, geo.rw), mode="nearest")[0]
    return F.pad(onehot, geo.pad)


def unpad_probs(prob: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """Padded probabilities [1+K, Hp, Wp] -> [1+K, H, W] at the original size."""
    left, right, top, bottom = geo.pad
    hp, wp = prob.shape[-2:]
    prob = prob[:, top:hp - bottom, left:wp - right]
    if geo.resized:
        prob = F.interpolate(prob.unsqueeze(0), size=(geo.height, geo.width), mode="bilinear",
                             align_corners=False)[0]
    return prob
