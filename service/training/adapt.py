"""Test-time adaptation: iMOS's parameter-efficient tuning on ONE sequence, before propagating it.

The annotated frame and its mask are turned into short pseudo-clips (random affine + elastic
views of that frame, as in the static training stage, but at the scale the engine will see the
sequence), and the Conv-Parallel adapters (and the decoder, unless switched off) take a few AdamW
steps on them. The base weights are never touched: the result is a new network.

Everything is a pure function of (weights, frames, masks, config): the clips of step s come from
``numpy.random.default_rng([seed, s])`` and torch's generator is seeded per step, so two workers
adapting the same request get the same weights (what lets a checkpoint carry only the request).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from service.engine.nn.network import ImosNet
from service.engine.nn.resnet import adapter_parameters
from service.errors import InvalidInput
from service.training.augment import crop_affine, elastic_field, is_colour, jitter_affine, photometric, warp
from service.training.clips import object_centre, present_objects
from service.training.config import AugmentConfig
from service.training.data import normalise, one_hot
from service.training.finetune import prepare
from service.training.forward import clip_forward
from service.training.losses import clip_loss

# Milder than training's: the views stand for the neighbouring frames of this very sequence.
VIEW_AUGMENT = AugmentConfig(rotate=8.0, shear=4.0, translate=0.04, frame_scale=0.06, elastic_alpha=0.02,
                             intensity=0.08, noise=0.02)


@dataclass(frozen=True)
class AdaptConfig:
    """steps: AdamW steps (0 = off); budget_s: stop early once this many seconds are spent (0 = none);
    crop: side of the square views in working-resolution pixels; length: frames per clip."""

    steps: int = 0
    budget_s: float = 0.0
    crop: int = 160
    length: int = 3
    lr: float = 1e-4
    decoder: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.budget_s < 0:
            raise InvalidInput("adapt_steps and adapt_budget_s must be >= 0")
        if self.crop < 32 or self.crop % 16 or self.length < 2:
            raise InvalidInput("adaptation views need a crop of >= 32 px (a multiple of 16) and >= 2 frames")


@dataclass(frozen=True)
class Prompt:
    """image uint8 [H, W, 3]; labels [H, W] (0 = background); scale: working pixels per frame pixel."""

    image: np.ndarray
    labels: np.ndarray
    scale: float


@dataclass(frozen=True)
class AdaptReport:
    steps: int
    seconds: float
    first_loss: float
    last_loss: float


def view_clip(prompt: Prompt, cfg: AdaptConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """``cfg.length`` views of the prompt at the working scale: frames uint8 [T, C, C, 3], labels
    [T, C, C] relabelled 1..K by the objects visible in view 0; None if view 0 shows none."""
    c, aug = cfg.crop, VIEW_AUGMENT
    h, w = prompt.labels.shape
    zoom = prompt.scale * min(h, w) / c
    base = crop_affine((h, w), c, zoom, object_centre(prompt.labels, rng))
    views = [warp(prompt.image, prompt.labels, jitter_affine(c, rng, aug.rotate, aug.shear, aug.translate,
                                                             aug.frame_scale) @ base, c,
                  elastic_field(c, rng, aug.elastic_alpha, aug.elastic_sigma)) for _ in range(cfg.length)]
    frames, labels = np.stack([v[0] for v in views]), np.stack([v[1] for v in views])
    ids = present_objects(labels[0], aug.min_pixels)
    if not ids:
        return None
    lut = np.zeros(256, np.uint8)
    lut[ids] = np.arange(1, len(ids) + 1)
    return photometric(frames, rng, aug.intensity, aug.noise, is_colour(prompt.image)), lut[labels]


def adapt(base: ImosNet, prompts: Sequence[Prompt], cfg: AdaptConfig) -> tuple[ImosNet, AdaptReport]:
    """A copy of ``base`` with adapters (+ decoder) tuned on views of ``prompts``; base is unchanged."""
    start = time.perf_counter()
    net = prepare(base, cfg.seed)
    if not cfg.decoder:
        for p in net.decoder.parameters():
            p.requires_grad_(False)
    trainable = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    net.train()
    for name in ("key_encoder", "key_proj", "value_encoder"):
        net.get_submodule(name).eval()  # frozen BatchNorm statistics: one image must not re-estimate them
    losses: list[float] = []
    for step in range(cfg.steps):
        if cfg.budget_s and time.perf_counter() - start >= cfg.budget_s:
            break
        loss = _step(net, opt, trainable, prompts, cfg, step)
        if loss is not None:
            losses.append(loss)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    first, last = (losses[0], losses[-1]) if losses else (math.nan, math.nan)
    return net, AdaptReport(len(losses), time.perf_counter() - start, first, last)


def _step(net: ImosNet, opt: torch.optim.Optimizer, trainable: list[torch.nn.Parameter],
          prompts: Sequence[Prompt], cfg: AdaptConfig, step: int) -> float | None:
    rng = np.random.default_rng([cfg.seed, step])
    clip = view_clip(prompts[int(rng.integers(len(prompts)))], cfg, rng)
    if clip is None:
        return None
    frames, labels = clip
    k = int(labels.max())
    images = normalise(frames).unsqueeze(0)
    target = torch.from_numpy(labels.astype(np.int64)).unsqueeze(0)
    valid = torch.ones((1, k), dtype=torch.bool)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    out = clip_forward(net, images, one_hot(target[:, 0], k), valid, gen, ref_frames=cfg.length,
                       deep_update_prob=0.0)
    terms = clip_loss(out.logits, out.probs, target[:, 1:], valid, 1.0, 1.0)
    opt.zero_grad(set_to_none=True)
    terms.total.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    return float(terms.total.detach())


def adapter_state(net: ImosNet) -> dict[str, torch.Tensor]:
    """What adaptation changed: adapter and decoder tensors, by state_dict name."""
    names = {id(p) for p in adapter_parameters(net) + list(net.decoder.parameters())}
    return {n: p.detach().clone() for n, p in net.named_parameters() if id(p) in names}
