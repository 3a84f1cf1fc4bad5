"""Flow-aware propagation: the previous frame's mask, carried by dense optical flow, fused with the memory
readout's probabilities.

The memory model reads each frame against a few remembered frames; where motion between neighbouring frames
is small and smooth, the previous frame's own result moved along the flow is strong evidence that the readout
can miss (a thin neurite among look-alikes, a ventricle wall in low contrast). Fusion is late, per pixel, of
two distributions over background and the K objects: geometric,
``p ∝ p_model^(1-w) * warp(p_prev)^w``, or linear, ``p = (1 - w) * p_model + w * warp(p_prev)``. It is ``p``
that the memory stores, so flow's drift is pulled back by the readout at every frame and the readout's lapses
are bridged by flow. A constant ``w`` (flow_weight) beat weights gated by the two's agreement or by the
object's grey-level appearance on dev, and the geometric mix beat the linear one (docs/model-card.md).

Flow is OpenCV's Farneback, from the current frame back to the previous one (every current pixel learns where
it came from), on the grey image the network sees, computed with its shorter side at most ``flow_size`` and
scaled back; nothing is cached outside the pass's state, and each frame pair's flow is computed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FarnebackParams:
    """cv2.calcOpticalFlowFarneback's arguments (OpenCV's names; its documented example values)."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    flags: int = 0


def backward_flow(cur: np.ndarray, prev: np.ndarray, params: FarnebackParams | None = None) -> np.ndarray:
    """Flow [H, W, 2] (dx, dy) from each pixel of ``cur`` uint8 [H, W] to its match in ``prev`` uint8 [H, W]."""
    p = params or FarnebackParams()
    out = np.zeros((*cur.shape[:2], 2), np.float32)  # not read: flags has no USE_INITIAL_FLOW
    flow = cv2.calcOpticalFlowFarneback(cur, prev, out, p.pyr_scale, p.levels, p.winsize, p.iterations,
                                        p.poly_n, p.poly_sigma, p.flags)
    return np.asarray(flow)


def flow_at(cur: np.ndarray, prev: np.ndarray, size: int, params: FarnebackParams | None = None) -> np.ndarray:
    """backward_flow of two uint8 [H, W] frames computed with their shorter side at most ``size`` (0: as they
    are) and brought back to [H, W, 2] in full-size pixels. Farneback's cost grows with the pixels while the
    motion a mask follows is coarse: at 480 px it cost more than the network's bf16 pass on an AMX CPU."""
    h, w = cur.shape
    scale = size / min(h, w) if size > 0 else 1.0
    if scale >= 1.0:
        return backward_flow(cur, prev, params)
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    flow = backward_flow(cv2.resize(cur, small, interpolation=cv2.INTER_AREA),
                         cv2.resize(prev, small, interpolation=cv2.INTER_AREA), params)
    full = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    full[..., 0] *= w / small[0]
    full[..., 1] *= h / small[1]
    return full


def grey_plane(image: torch.Tensor) -> torch.Tensor:
    """Network input [1, 3, H, W] (ImageNet-normalised) -> grey uint8 [H, W] on the CPU (mean of the channels)."""
    mean = torch.tensor(_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(_STD, device=image.device).view(3, 1, 1)
    rgb = image[0].float() * std + mean
    return (rgb.mean(0) * 255).round().clamp(0, 255).to(torch.uint8).cpu()


def warp_probs(prob: torch.Tensor, flow: np.ndarray) -> torch.Tensor:
    """Distribution [1+K, H, W] (background first) of the previous frame -> the same carried to the current
    frame by ``flow`` [H, W, 2]. Pixels that come from outside the frame are background."""
    h, w = prob.shape[-2:]
    grid_x = torch.arange(w, dtype=torch.float32).view(1, w) + torch.from_numpy(flow[..., 0])
    grid_y = torch.arange(h, dtype=torch.float32).view(h, 1) + torch.from_numpy(flow[..., 1])
    # grid_sample's normalised coordinates with align_corners=True: -1 and 1 are the centres of the edge pixels
    grid = torch.stack([2 * grid_x / max(w - 1, 1) - 1, 2 * grid_y / max(h - 1, 1) - 1], -1).unsqueeze(0)
    objects = F.grid_sample(prob[1:].unsqueeze(0).float().cpu(), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True)[0].clamp(0, 1)
    background = (1 - objects.sum(0, keepdim=True)).clamp(0, 1)
    return torch.cat([background, objects], 0).to(prob.device, prob.dtype)


MIXES = ("geometric", "linear")
# Floor for log-probabilities of the geometric mix: a carried zero must not veto the readout outright.
_EPS = 1e-6


def fuse(model: torch.Tensor, prev: torch.Tensor, flow: np.ndarray, weight: float,
         mix: str = "geometric") -> torch.Tensor:
    """model [1+K', H, W]; prev [1+K, H, W] with K <= K' (objects added since start at zero);
    weight in [0, 1]; mix "linear" (weighted mean) or "geometric" (weighted mean of log-probabilities,
    renormalised: agreement sharpens, a hesitant readout is carried by a confident flow prior).
    Returns the fused distribution [1+K', H, W]."""
    if prev.shape[0] < model.shape[0]:
        prev = torch.cat([prev, prev.new_zeros((model.shape[0] - prev.shape[0], *prev.shape[1:]))], 0)
    carried = warp_probs(prev, flow)
    if mix == "linear":
        return (1 - weight) * model + weight * carried
    logp = (1 - weight) * model.clamp_min(_EPS).log() + weight * carried.clamp_min(_EPS).log()
    return torch.softmax(logp, 0)
