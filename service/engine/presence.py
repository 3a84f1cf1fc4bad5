"""Objects that end: a presence decision per object and direction.

In a volume a structure ends (a lesion after a few slices, an organ at its pole) and a mask that fades to a
few stray pixels should not come back a slice later as a ghost the memory then keeps. An object whose
probability mass falls below ``end_fraction`` of the largest mass it had in this pass is ended: from then
on the pass gives its pixels to the background, until a new annotation of that object restarts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Presence:
    """peak [K]: each object's largest probability mass (pixels) so far in the pass; ended [K] (0/1 floats,
    so that the state codec stores them like every other tensor)."""

    peak: torch.Tensor
    ended: torch.Tensor


def mass(prob: torch.Tensor) -> torch.Tensor:
    """prob [1+K, H, W] -> each object's probability mass [K] in pixels."""
    return prob[1:].float().sum((-2, -1)).cpu()


def decide(prob: torch.Tensor, before: Presence | None, end_fraction: float,
           given: tuple[int, ...] | None = None, annotated: bool = False) -> tuple[torch.Tensor, Presence]:
    """Apply and update the decision for one frame.

    prob [1+K, H, W] (background first); before: the decision after the previous frame (None at the start
    of a pass); given: the 0-based objects an annotation on this frame draws (None = all, when
    ``annotated``). Returns (prob with ended objects moved to the background, the new decision).
    """
    k = prob.shape[0] - 1
    now = mass(prob)
    peak, ended = torch.zeros(k), torch.zeros(k)
    if before is not None:
        have = before.peak.shape[0]
        peak[:have], ended[:have] = before.peak, before.ended
    if annotated:
        for i in range(k) if given is None else given:
            peak[i], ended[i] = 0.0, 0.0
    live = ended < 0.5
    peak = torch.where(live, torch.maximum(peak, now), peak)
    ended = torch.where(live & (now < end_fraction * peak), torch.ones(k), ended)
    if bool((ended > 0.5).any()):
        prob = prob.clone()
        gone = (ended > 0.5).to(prob.device)
        prob[0] = prob[0] + (prob[1:] * gone.view(-1, 1, 1).to(prob.dtype)).sum(0)
        prob[1:] = prob[1:] * (1 - gone.view(-1, 1, 1).to(prob.dtype))
    return prob, Presence(peak, ended)
