"""DAVIS region (J) and boundary (F) measures for one object on one frame.

Definitions follow the DAVIS 2017 evaluation (``db_eval_iou``, ``db_eval_boundary``):
J is the IoU of two binary masks; F is the F-measure of boundary precision and recall,
where a boundary pixel counts as matched if the other mask's boundary lies within a disk
of radius ceil(bound_th * image diagonal). Both-empty masks score J = F = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

BOUND_TH = 0.008


@dataclass(frozen=True)
class FrameScore:
    """J and F of one object on one frame, each in [0, 1]."""

    j: float
    f: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region IoU of two binary masks [H, W]; 1.0 when both are empty."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    union = int(np.count_nonzero(pred | gt))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pred & gt)) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels [H, W] bool of a binary mask [H, W], as DAVIS's ``seg2bmap``.

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour; the last row compares only east, the last column only south, and the
    bottom-right corner is never a boundary. So an object's boundary lies on its own
    right/bottom edge pixels and on the background pixels just left of / above it.
    """
    seg = mask.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    out = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    out[-1, :] = seg[-1, :] ^ east[-1, :]
    out[:, -1] = seg[:, -1] ^ south[:, -1]
    out[-1, -1] = False
    return np.asarray(out, dtype=bool)


def bound_radius(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> int:
    """Matching tolerance in pixels for a frame of size ``shape`` (H, W): th >= 1 is absolute."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def disk(radius: int) -> np.ndarray:
    """Disk structuring element [2r+1, 2r+1] uint8: offsets with dy^2 + dx^2 <= r^2."""
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return np.asarray(x * x + y * y <= radius * radius, dtype=np.uint8)


def _dilate(bmap: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of [H, W] bool by a disk; pixels outside the frame count as absent."""
    if radius == 0:
        return bmap
    return cv2.dilate(bmap.astype(np.uint8), disk(radius)).astype(bool)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of binary masks [H, W] (DAVIS ``f_measure``); 1.0 when both are empty."""
    radius = bound_radius(gt.shape, bound_th)
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    # DAVIS's conventions when one side has no boundary at all.
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = np.count_nonzero(pb & _dilate(gb, radius)) / n_pred
    recall = np.count_nonzero(gb & _dilate(pb, radius)) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def score(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> FrameScore:
    """J and F of a binary prediction [H, W] against a binary ground truth [H, W]."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction is {pred.shape} but the ground truth is {gt.shape}")
    return FrameScore(jaccard(pred, gt), boundary_f(pred, gt, bound_th))
