"""Propagating one mask through a sequence, forward and backward, frame by frame."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch

from service.engine import processor
from service.engine.adaptation import Adapter, Recipe
from service.engine.backends.base import Stages
from service.engine.direction import BOTH, owner
from service.engine.preprocess import Geometry, image_tensor, mask_tensor, plan_geometry, to_rgb, unpad_probs
from service.engine.scheduler import PassScheduler, PassSlot, pass_slots
from service.engine.spec import MemoryConfig
from service.engine.state import BACKWARD, FORWARD, PassState
from service.engine.validate import check_frame, check_frames, check_mask
from service.errors import BackendUnavailable, InvalidInput, InvalidMask, StateError

DIRECTIONS = (BOTH, FORWARD, BACKWARD)


@dataclass(frozen=True)
class FrameResult:
    """probs [1+K, H, W] float32 at the frame's own size, background first;
    channel i+1 is object_ids[i]."""

    index: int
    direction: str
    probs: np.ndarray
    object_ids: tuple[int, ...]
    annotation: np.ndarray | None = None

    def labels(self) -> np.ndarray:
        """Index mask [H, W] with the caller's label values (uint8 when they fit).

        On an annotated frame the given objects are exactly as drawn (the network
        sees them resized, which would otherwise blur their edges); objects the
        annotation did not mention keep their prediction outside the drawn pixels.
        """
        dtype = np.uint8 if max(self.object_ids, default=0) < 256 else np.int32
        out: np.ndarray = np.array((0,) + self.object_ids, dtype=dtype)[channel_argmax(self.probs)]
        if self.annotation is not None:
            given = [o for o in np.unique(self.annotation) if o != 0]
            out = np.where(np.isin(out, given), 0, out)
            out = np.where(self.annotation != 0, self.annotation, out)
        return out.astype(dtype, copy=False)


def channel_argmax(probs: np.ndarray) -> np.ndarray:
    """probs [C, H, W] -> index of the largest channel [H, W] (uint8 for C <= 256), the first on ties
    as numpy's argmax. A pass over the C planes: argmax along the outer axis strides through memory and
    took 4 ms per 480x480 frame here, this about 1 (it runs on every served frame)."""
    if probs.shape[0] > 256:
        first: np.ndarray = probs.argmax(0)
        return first
    best, idx = probs[0], np.zeros(probs.shape[1:], np.uint8)
    for c in range(1, probs.shape[0]):
        above = probs[c] > best
        idx[above] = c
        best = np.maximum(best, probs[c])
    return idx


class Propagator:
    """Runs SessionStates with one backend. Holds no per-sequence state itself."""

    def __init__(self, stages: Stages, config: MemoryConfig, model: str, max_objects: int,
                 adapter: Adapter | None = None) -> None:
        self.stages = stages
        self.config = config
        self.model = model
        self.max_objects = max_objects
        self.adapter = adapter  # per-sequence adaptation (adapt_steps > 0); None: not offered here

    def start(self, frame: np.ndarray, mask: np.ndarray, anchor: int, direction: str,
              num_frames: int | None) -> tuple[PassState, FrameResult]:
        """Begin one direction at the annotated frame; returns the state and the anchor's result."""
        if direction not in (FORWARD, BACKWARD):
            raise InvalidInput(f"direction must be forward or backward, got {direction!r}")
        if anchor < 0 or (num_frames is not None and anchor >= num_frames):
            raise InvalidInput(f"annotated frame {anchor} is outside the sequence (0..{(num_frames or 1) - 1})")
        frame = check_frame(frame, anchor)
        labels, objects = check_mask(mask, frame.shape[:2], self.max_objects)
        size = self.config.working_size(frame.shape[0], frame.shape[1])
        geo = plan_geometry(frame.shape[0], frame.shape[1], size, self.config.max_upscale)
        state = PassState(direction=direction, anchor=anchor, cursor=anchor, num_frames=num_frames,
                             object_ids=objects, geometry=geo, config=self.config, model=self.model,
                             core=processor.initial_state(self.config), weights=self._adapt(frame, labels, geo))
        return self.advance(state, frame, labels)

    def _adapt(self, frame: np.ndarray, labels: np.ndarray, geo: Geometry) -> str:
        """The key of the weights adapted to this pass's annotated frame ("" without adapt_steps)."""
        if self.config.adapt_steps <= 0:
            return ""
        if self.adapter is None:
            raise BackendUnavailable("adapt_steps needs the model's torch weights, which this engine does not offer")
        recipe = Recipe(self.config.adapt_steps, self.config.adapt_budget_s, self.config.adapt_decoder)
        return self.adapter.adapt(to_rgb(frame), labels, geo.rh / geo.height, recipe)

    def stages_for(self, state: PassState) -> Stages:
        """The stages a pass runs on: its adapted weights' own, else the engine's."""
        if not state.weights:
            return self.stages
        if self.adapter is None:
            raise StateError("this pass runs on adapted weights, which this engine does not offer")
        return self.adapter.stages(state.weights)

    def advance(self, state: PassState, frame: np.ndarray,
                mask: np.ndarray | None = None) -> tuple[PassState, FrameResult]:
        """Process the frame at state.cursor (optionally with a correction mask)."""
        if state.finished:
            raise InvalidInput(f"the {state.direction} pass has already reached the end of the sequence")
        geo, device = state.geometry, self.stages.device
        frame = check_frame(frame, state.cursor, (geo.height, geo.width))
        object_ids, onehot, given, labels = state.object_ids, None, None, None
        if mask is not None:
            labels, objects = check_mask(mask, (geo.height, geo.width), self.max_objects)
            object_ids = object_ids + tuple(o for o in objects if o not in object_ids)
            if len(object_ids) > self.max_objects:
                raise InvalidMask(f"{len(object_ids)} objects in all; this model allows {self.max_objects}")
            remapped = np.zeros_like(labels)
            for channel, label in enumerate(object_ids, start=1):
                remapped[labels == label] = channel
            onehot = mask_tensor(remapped, len(object_ids), geo, device)
            given = tuple(object_ids.index(o) for o in objects)
        with torch.inference_mode():
            image = image_tensor(frame, geo, device)
            core, prob = processor.step(self.stages_for(state), state.config, state.core, image, onehot, given,
                                        end=state.is_last(state.cursor))
            probs = unpad_probs(prob, geo).float().cpu().numpy()
        result = FrameResult(state.cursor, state.direction, probs, object_ids,
                             None if mask is None else labels)
        nxt = dataclasses.replace(state, core=core, cursor=state.cursor + state.step_sign, object_ids=object_ids)
        return nxt, result

    def run(self, frames: Sequence[np.ndarray], mask: np.ndarray, anchor: int,
            direction: str = "both") -> Iterator[FrameResult]:
        """Yield every frame's result once (the pass that owns it), forward and backward interleaved:
        per round the forward pass's frame, then the backward pass's."""
        anchors = (anchor,)
        passes = (FORWARD, BACKWARD) if direction == BOTH else (direction,)
        for stepped, res in self.run_passes(frames, {anchor: mask}, direction):
            if owner(res.index, anchors, passes) == stepped:
                yield res

    def run_passes(self, frames: Sequence[np.ndarray], annotations: Mapping[int, np.ndarray],
                   direction: str = "both") -> Iterator[tuple[str, FrameResult]]:
        """Run the passes over ``frames`` (forward from the first annotated frame, backward from the
        last; annotations met on the way are corrections) and yield (direction, result) for every step
        of every pass, the anchor step of a shared anchor once per pass.

        Each pass is a batcher client while it steps, so a lone session's calls never wait; with a
        batcher the passes of a round compute in two threads, their stage calls meeting in one batch.
        """
        if direction not in DIRECTIONS:
            raise InvalidInput(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        frames = check_frames(frames)
        n = len(frames)
        anchors = tuple(sorted(annotations))
        for a in anchors:
            if not 0 <= a < n:
                raise InvalidInput(f"annotated frame {a} is outside the sequence (0..{n - 1})")
        slots = pass_slots(anchors, (FORWARD, BACKWARD) if direction == BOTH else (direction,))
        with PassScheduler(slots, self.stages, n, n) as sched, ExitStack() as stack:
            pool: ThreadPoolExecutor | None = None
            while (rnd := sched.next_round()) is not None:
                if rnd.concurrent and pool is None:
                    pool = stack.enter_context(ThreadPoolExecutor(len(slots), "imos-direction"))
                calls = [(slot, frames[t], annotations.get(t), n) for slot, t in rnd.to_compute]
                steps = list(_each(pool if rnd.concurrent else None, self._step, calls))
                for slot, _, _, res in sched.commit(rnd, steps):
                    yield slot.direction, res

    def _step(self, slot: PassSlot, frame: np.ndarray, mask: np.ndarray | None,
              num_frames: int | None) -> tuple[PassState, FrameResult]:
        """A pass's next step: its start on its anchor, else the frame at its cursor."""
        if slot.state is None:
            if mask is None:
                raise InvalidInput(f"the {slot.direction} pass starts on frame {slot.start}, which has no mask")
            return self.start(frame, mask, slot.start, slot.direction, num_frames)
        return self.advance(slot.state, frame, mask)


Step = tuple[PassState, FrameResult]


def _each(pool: ThreadPoolExecutor | None, fn: Callable[..., Step], calls: Sequence[tuple[object, ...]]) -> list[Step]:
    """fn(*args) for each call, in order: one after another without a pool, else all at once (every
    call returns before the first error is raised, so no engine thread outlives the run)."""
    if pool is None:
        return [fn(*args) for args in calls]
    futures = [pool.submit(fn, *args) for args in calls]
    wait(futures)
    return [future.result() for future in futures]
