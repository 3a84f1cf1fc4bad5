"""The optical-flow baseline: each object's mask warped frame to frame with Farneback flow.

For each step prev -> cur, dense flow is computed from the current frame back to the previous
one, so every current pixel knows where it came from; each object's mask is then sampled there
(bilinear, kept where >= 0.5). Objects are warped separately, so they may overlap and vanish on
their own; on output the lowest id wins a pixel that two objects claim. OpenCV's documented
example parameters (the defaults below) reproduce the README's reference numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from service.engine.flow_fusion import FarnebackParams, backward_flow
from service.evaluation.passes import PassPlan, compose, split, with_given
from service.evaluation.trackers import PassByPass

__all__ = ["FarnebackParams", "FlowTracker", "backward_flow", "grey", "warp"]


def grey(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W] or [H, W, 3] (RGB) -> uint8 [H, W]."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(frame[:, :, :3]), cv2.COLOR_RGB2GRAY)


def warp(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Binary mask [H, W] of the previous frame -> binary mask [H, W] of the current frame."""
    h, w = mask.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    sampled = cv2.remap(mask.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return sampled >= 0.5


class FlowTracker(PassByPass):
    """Farneback flow, per object, frame to frame along each pass."""

    name = "flow"
    needs_frames = True

    def __init__(self, params: FarnebackParams | None = None) -> None:
        self.params = params or FarnebackParams()

    def run_pass(self, frames: Sequence[np.ndarray] | None, plan: PassPlan) -> Iterator[tuple[int, np.ndarray]]:
        assert frames is not None
        start = plan.order[0]
        masks = split(plan.prompts[start])
        prev = grey(frames[start])
        yield start, compose(masks, prev.shape)
        for t in plan.order[1:]:
            cur = grey(frames[t])
            flow = backward_flow(cur, prev, self.params)
            masks = {o: warp(m, flow) for o, m in masks.items()}
            if t in plan.prompts:
                masks = with_given(masks, plan.prompts[t])
            prev = cur
            yield t, compose(masks, cur.shape)
