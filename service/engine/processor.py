"""One propagation direction, frame by frame: XMem's per-frame procedure as a pure step.

``step(stages, cfg, state, image, ...)`` returns the next state and the frame's
probabilities; the state is never mutated, so it can be checkpointed between
any two frames and continued elsewhere with identical results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from service.engine import flow_fusion
from service.engine.backends.base import Stages
from service.engine.memory import manager
from service.engine.memory.manager import Memory
from service.engine.presence import Presence, decide
from service.engine.spec import MemoryConfig


@dataclass(frozen=True)
class DirectionState:
    """Everything one direction remembers.

    steps: frames processed so far; last_mem / last_deep: step index of the
    last memory frame / deep update; num_objects: K; hidden [1, K, Ch, h, w]
    (the sensory memory) or None before the first annotation. With flow fusion on
    (MemoryConfig.flow_weight > 0): prev_grey, the last frame's grey input uint8 [H, W], and prev_prob,
    its result [1+K, H, W]; None otherwise. With end_fraction > 0: presence, which objects have ended.
    """

    memory: Memory
    steps: int = 0
    last_mem: int = 0
    last_deep: int = 0
    num_objects: int = 0
    hidden: torch.Tensor | None = None
    prev_grey: torch.Tensor | None = None
    prev_prob: torch.Tensor | None = None
    presence: Presence | None = None


def initial_state(cfg: MemoryConfig) -> DirectionState:
    return DirectionState(memory=manager.empty_memory(cfg), last_deep=-cfg.deep_update_every)


def aggregate(prob: torch.Tensor, dim: int) -> torch.Tensor:
    """Soft aggregation: objects' probabilities [.., K, ..] -> [.., 1+K, ..] with background first."""
    bg = torch.prod(1 - prob, dim=dim, keepdim=True)
    p = torch.cat([bg, prob], dim).clamp(1e-7, 1 - 1e-7)
    return torch.softmax(torch.log(p / (1 - p)), dim=dim)


def step(stages: Stages, cfg: MemoryConfig, st: DirectionState, image: torch.Tensor,
         mask: torch.Tensor | None = None, given: tuple[int, ...] | None = None,
         end: bool = False) -> tuple[DirectionState, torch.Tensor]:
    """Process one frame.

    image [1, 3, H, W] normalised and padded to multiples of 16; mask [K', H, W]
    one-hot float over all K' objects known after this frame (K' >= K), with
    ``given`` naming the 0-based objects it annotates (None = all); end: the
    last frame of the pass (segmented, never memorised).
    Returns (next state, probabilities [1+K', H, W], background first).
    """
    t = st.steps
    sync = cfg.deep_update_every < 0
    is_mem = (t - st.last_mem >= cfg.mem_every or mask is not None) and not end
    deep = ((sync and is_mem) or (not sync and t - st.last_deep >= cfg.deep_update_every)) and not end
    normal_update = (not sync or not deep) and not end
    if t == 0 and mask is None:
        raise ValueError("the first frame of a direction needs a mask")
    feats = stages.encode_key(image)
    memory, hidden = st.memory, st.hidden
    num_objects = st.num_objects if mask is None else mask.shape[0]
    partial = given is not None and len(given) != num_objects
    prob: torch.Tensor | None = None
    if t > 0 and (mask is None or partial):
        readout, memory = manager.match(memory, cfg, feats.key, feats.selection)
        assert hidden is not None
        logits, new_hidden = stages.segment(feats, readout.unsqueeze(0), hidden)
        prob = aggregate(torch.sigmoid(logits), dim=1)[0]
        if normal_update:
            hidden = new_hidden
    grey = flow_fusion.grey_plane(image) if cfg.flow_weight > 0 else None
    if prob is not None and grey is not None and st.prev_grey is not None and st.prev_prob is not None:
        flow = flow_fusion.flow_at(grey.numpy(), st.prev_grey.numpy(), cfg.flow_size)
        prob = flow_fusion.fuse(prob, st.prev_prob, flow, cfg.flow_weight, cfg.flow_mix)
    if mask is not None:
        prob = _merge_mask(prob, mask, given)
        hidden = _grow_hidden(hidden, num_objects, feats.key, stages)
    assert prob is not None and hidden is not None
    decided = st.presence
    if cfg.end_fraction > 0:
        prob, decided = decide(prob, st.presence, cfg.end_fraction, given, annotated=mask is not None)
    last_mem, last_deep = st.last_mem, st.last_deep
    if is_mem:
        value, deep_hidden = stages.encode_value(image, feats.f16, hidden, prob[1:].unsqueeze(0))
        memory = manager.add(memory, cfg, feats.key, feats.shrinkage, feats.selection, value[0], num_objects)
        last_mem = t
        if deep:
            hidden, last_deep = deep_hidden, t
    nxt = dataclasses.replace(st, memory=memory, steps=t + 1, last_mem=last_mem, last_deep=last_deep,
                              num_objects=num_objects, hidden=hidden, prev_grey=grey,
                              prev_prob=None if grey is None else prob, presence=decided)
    return nxt, prob


def _merge_mask(pred: torch.Tensor | None, mask: torch.Tensor, given: tuple[int, ...] | None) -> torch.Tensor:
    """Objects not in ``given`` keep their prediction, cleared where the mask has any object."""
    mask = mask.clone()
    if pred is not None and given is not None:
        pred_obj = pred[1:].clone()
        pred_obj[:, mask.sum(0) > 0.5] = 0
        for i in range(pred_obj.shape[0]):
            if i not in given:
                mask[i] = pred_obj[i]
    return aggregate(mask, dim=0)


def _grow_hidden(hidden: torch.Tensor | None, k: int, key: torch.Tensor, stages: Stages) -> torch.Tensor:
    """New objects start with a zero sensory memory [1, k, Ch, h, w]."""
    h, w = key.shape[-2:]
    ch = stages.hidden_dim
    have = 0 if hidden is None else hidden.shape[1]
    if have == k and hidden is not None:
        return hidden
    zeros = torch.zeros((1, k - have, ch, h, w), device=key.device)
    return zeros if hidden is None else torch.cat([hidden, zeros], 1)

