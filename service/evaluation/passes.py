"""Turn a protocol into propagation passes over frame indices, and combine their outputs.

A pass walks frames in one direction from its first prompt; prompts met on the way add their
objects. The model merges them itself (Propagator.advance); the copy and flow baselines track
each object on its own (``split`` / ``with_given`` / ``compose``), as the README's reference
baseline numbers were made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from service.engine.direction import BACKWARD, FORWARD
from service.evaluation.dataset import SequenceInfo
from service.evaluation.protocol import Protocol


@dataclass(frozen=True)
class PassPlan:
    """One direction. order: frame indices in processing order (order[0] is a prompt);
    prompts: frame index -> index mask [H, W] holding only the objects given there."""

    direction: str
    order: tuple[int, ...]
    prompts: Mapping[int, np.ndarray]


def prompt_masks(seq: SequenceInfo, protocol: Protocol,
                 annotations: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """frame index -> that frame's annotation restricted to the objects given there."""
    out: dict[int, np.ndarray] = {}
    for p in protocol.prompts:
        ann = annotations[p.frame]
        out[seq.index(p.frame)] = np.where(np.isin(ann, p.objects), ann, 0)
    return out


def plan_passes(protocol: Protocol, num_frames: int, prompts: Mapping[int, np.ndarray]) -> list[PassPlan]:
    """Forward from the earliest prompt; for "both" also backward from the latest one."""
    if not prompts:
        return []
    first, last = min(prompts), max(prompts)
    plans = [PassPlan(FORWARD, tuple(range(first, num_frames)), prompts)]
    if protocol.direction == "both":
        plans.append(PassPlan(BACKWARD, tuple(range(last, -1, -1)), prompts))
    return plans


def count_steps(protocol: Protocol, seq: SequenceInfo) -> int:
    """Frames the passes of ``protocol`` will process (for a progress total)."""
    idx = [seq.index(p.frame) for p in protocol.prompts]
    if not idx:
        return 0
    n = len(seq.frame_names) - min(idx)
    return n + (max(idx) + 1 if protocol.direction == "both" else 0)


def split(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Index mask [H, W] -> {object id: bool mask [H, W]}."""
    return {int(o): labels == o for o in np.unique(labels) if o != 0}


def with_given(masks: Mapping[int, np.ndarray], given: np.ndarray) -> dict[int, np.ndarray]:
    """Per-object masks after a prompt: given objects take their drawn mask, the others stay as
    they are (objects are independent tracks, so they may overlap)."""
    out = dict(masks)
    out.update(split(given))
    return out


def compose(masks: Mapping[int, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """{object id: bool mask [H, W]} -> index mask [H, W] int64; the lowest id wins an overlap
    (the rule behind the README's reference baseline numbers)."""
    out = np.zeros(shape[:2], np.int64)
    for obj in sorted(masks, reverse=True):
        out[masks[obj]] = obj
    return out


def combine(passes: Iterable[tuple[str, int, Mapping[int, np.ndarray]]]) -> dict[int, np.ndarray]:
    """Per-pass outputs (direction, start frame, {index -> mask}) -> one mask per reached frame.

    The forward pass owns every frame from its start on; the backward pass fills the frames
    before it (with a single prompt: forward owns the prompt frame and after, backward the rest).
    """
    out: dict[int, np.ndarray] = {}
    forward_start = None
    items = list(passes)
    for direction, start, masks in items:
        if direction == FORWARD:
            out.update(masks)
            forward_start = start
    for direction, _, masks in items:
        if direction == BACKWARD:
            out.update({t: m for t, m in masks.items() if forward_start is None or t < forward_start})
    return out
