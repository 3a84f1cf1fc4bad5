"""The differentiable XMem training pass over a batch of clips, on the engine's own ImosNet.

Frame 0's mask is given. Keys of all frames are encoded at once; frame 0's value comes from its
mask. For t = 1..T-1 the frame reads the memory (frame 0 plus up to ref_frames - 1 random earlier
memory frames, XMem's num_ref_frames), is segmented with the sensory memory, aggregated, and,
unless it is the last frame, its value is encoded from its PREDICTED soft masks and joins the
memory; with probability deep_update_prob the value encoder's deep update replaces the hidden.

Memory attention is a full softmax over the memory (XMem's training get_affinity), not inference's
top-k: training memories hold at most ref_frames * h * w entries, so it is cheap, and every memory
key gets a gradient, which shapes the key space faster than top-k's sparse gradient. ``top_k``
switches to inference's top-k softmax where a run wants train/test parity instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.engine.memory.affinity import similarity, topk_softmax
from service.engine.nn.network import ImosNet

MASKED = -1e4  # logit of padding objects: softmax gives them exactly 0 in float32 and bfloat16


@dataclass(frozen=True)
class ClipOutput:
    """logits / probs [B, T-1, 1+K, H, W] (background first) for frames 1..T-1."""

    logits: torch.Tensor
    probs: torch.Tensor


def aggregate_logits(prob: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Soft aggregation as logits: object probabilities [B, K, H, W] -> [B, 1+K, H, W].

    softmax(result, 1) equals the engine's processor.aggregate for the valid objects; padding
    objects get MASKED so that they take no probability.
    """
    bg = torch.prod(1 - prob, dim=1, keepdim=True)
    p = torch.cat([bg, prob], 1).clamp(1e-7, 1 - 1e-7)
    logits = torch.log(p / (1 - p))
    keep = torch.cat([torch.ones_like(valid[:, :1]), valid], 1).view(valid.shape[0], -1, 1, 1)
    return logits.masked_fill(~keep, MASKED)


def read_memory(mem_key: torch.Tensor, mem_shrinkage: torch.Tensor, mem_value: torch.Tensor,
                query_key: torch.Tensor, query_selection: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """mem_key [B, Ck, N], mem_shrinkage [B, 1, N], mem_value [B, K, Cv, N], query_key /
    query_selection [B, Ck, h, w] -> readout [B, K, Cv, h, w]."""
    b, k, cv, _ = mem_value.shape
    h, w = query_key.shape[-2:]
    sim = similarity(mem_key, mem_shrinkage, query_key.flatten(2), query_selection.flatten(2))
    affinity = torch.softmax(sim, dim=1) if top_k is None else topk_softmax(sim, top_k)
    return torch.bmm(mem_value.flatten(1, 2), affinity).view(b, k, cv, h, w)


def memory_indices(t: int, ref_frames: int, gen: torch.Generator) -> list[int]:
    """Memory frames read by frame t: all of 0..t-1 while they fit, else frame 0 + random others."""
    if t <= ref_frames:
        return list(range(t))
    others = (torch.randperm(t - 1, generator=gen)[:ref_frames - 1] + 1).tolist()
    return [0] + sorted(others)


def clip_forward(net: ImosNet, images: torch.Tensor, first_masks: torch.Tensor, valid: torch.Tensor,
                 gen: torch.Generator, ref_frames: int = 3, deep_update_prob: float = 0.2,
                 top_k: int | None = None) -> ClipOutput:
    """images [B, T, 3, H, W] normalised; first_masks [B, K, H, W] one-hot of frame 0; valid [B, K]
    bool; gen: the generator for memory sampling and deep-update draws (determinism)."""
    b, t_len = images.shape[:2]
    key, shrinkage, selection, f16, f8, f4 = (x.view(b, t_len, *x.shape[1:])
                                              for x in net.encode_key(images.flatten(0, 1)))
    k = first_masks.shape[1]
    hidden = torch.zeros((b, k, net.spec.hidden_dim, *key.shape[-2:]), device=images.device, dtype=f16.dtype)
    value, hidden = net.encode_value(images[:, 0], f16[:, 0], hidden, first_masks)
    values = [value]
    keep = valid.view(b, k, 1, 1).to(value.dtype)
    all_logits, all_probs = [], []
    for t in range(1, t_len):
        idx = memory_indices(t, ref_frames, gen)
        readout = read_memory(_frames(key, idx), _frames(shrinkage, idx),
                              torch.stack([values[i] for i in idx], -3).flatten(-3),
                              key[:, t], selection[:, t], top_k)
        logits, hidden = net.segment(f16[:, t], f8[:, t], f4[:, t], readout, hidden)
        agg = aggregate_logits(torch.sigmoid(logits) * keep, valid)
        probs = torch.softmax(agg, dim=1)
        all_logits.append(agg)
        all_probs.append(probs)
        if t < t_len - 1:
            value, deep_hidden = net.encode_value(images[:, t], f16[:, t], hidden, probs[:, 1:])
            values.append(value)
            if float(torch.rand((), generator=gen)) < deep_update_prob:
                hidden = deep_hidden
    return ClipOutput(torch.stack(all_logits, 1), torch.stack(all_probs, 1))


def _frames(x: torch.Tensor, idx: list[int]) -> torch.Tensor:
    """x [B, T, C, h, w] -> the chosen frames side by side, [B, C, len(idx) * h * w]."""
    return x[:, idx].transpose(1, 2).flatten(2)
