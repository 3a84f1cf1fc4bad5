"""XMem's training losses: bootstrapped cross-entropy over (background + objects) and soft Dice."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def bootstrap_p(step: int, iterations: int, warm: tuple[float, float], top_p: float) -> float:
    """Share of pixels the CE keeps at ``step`` of a stage: 1.0 before warm[0] * iterations, falling
    linearly to ``top_p`` at warm[1] * iterations and staying there (XMem's schedule)."""
    start, end = warm[0] * iterations, warm[1] * iterations
    if step < start:
        return 1.0
    if step >= end or end <= start:
        return top_p
    return top_p + (1 - top_p) * (end - step) / (end - start)


def bootstrapped_ce(logits: torch.Tensor, target: torch.Tensor, p: float) -> torch.Tensor:
    """Mean CE over the hardest ``p`` share of pixels of each image.

    logits [N, 1+K, H, W]; target [N, H, W] int64 in 0..K. With p = 1 this is plain CE.
    """
    raw = F.cross_entropy(logits, target, reduction="none").flatten(1)
    if p >= 1.0:
        return raw.mean()
    k = max(1, int(raw.shape[1] * p))
    return raw.topk(k, dim=1, sorted=False).values.mean()


def soft_dice(probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - (2|P.G| + 1) / (|P| + |G| + 1) per object, averaged over the valid objects.

    probs [N, K, H, W] object probabilities; target [N, H, W] in 0..K; valid [N, K] bool.
    The +1 smoothing makes an absent object predicted absent cost 0, as in XMem.
    """
    k = probs.shape[1]
    gt = (target.unsqueeze(1) == torch.arange(1, k + 1, device=target.device).view(1, k, 1, 1)).float()
    inter = (probs * gt).flatten(2).sum(-1)
    total = probs.flatten(2).sum(-1) + gt.flatten(2).sum(-1)
    loss = 1 - (2 * inter + 1) / (total + 1)
    w = valid.float()
    return (loss * w).sum() / w.sum().clamp(min=1)


@dataclass(frozen=True)
class LossTerms:
    """total = ce + dice_weight * dice (scalars); p: the bootstrapping share used."""

    total: torch.Tensor
    ce: torch.Tensor
    dice: torch.Tensor
    p: float


def clip_loss(logits: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
              p: float, dice_weight: float) -> LossTerms:
    """logits / probs [B, T', 1+K, H, W] for frames 1..T-1; labels [B, T', H, W]; valid [B, K]."""
    t = logits.shape[1]
    flat_logits = logits.flatten(0, 1)
    flat_labels = labels.flatten(0, 1)
    ce = bootstrapped_ce(flat_logits, flat_labels, p)
    dice = soft_dice(probs.flatten(0, 1)[:, 1:], flat_labels, valid.repeat_interleave(t, 0))
    return LossTerms(ce + dice_weight * dice, ce.detach(), dice.detach(), p)
