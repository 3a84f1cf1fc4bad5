"""Stepping the passes of one run: the one rule for which pass computes which frame when.

A run is one or two passes (forward from its first anchor, backward from its last) that step
together, one frame each per round. :class:`PassScheduler` decides each round (the passes whose next
frame is available, the shared anchor step, finished-ness, batcher leases) and takes the computed
steps back; it does no I/O and computes nothing, so the in-process :meth:`Propagator.run_passes`
(threads), the worker (asyncio, frames from the store) and evaluation all step passes through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from service.engine.batching import ClientLease, DynamicBatcher, client_lease
from service.engine.direction import BACKWARD, FORWARD, pass_start, shares_anchor_step

if TYPE_CHECKING:
    from service.engine.backends.base import Stages
    from service.engine.propagate import FrameResult
    from service.engine.state import PassState


@dataclass
class PassSlot:
    """One pass of a run in flight: its direction, the annotated frame it begins on, and its state
    (None until its first step)."""

    direction: str
    start: int
    state: PassState | None = None

    @property
    def next_index(self) -> int:
        return self.start if self.state is None else self.state.cursor


@dataclass(frozen=True)
class Round:
    """The passes that step together, in pass order (forward first), each on frame ``indices[i]``.
    shared: both begin on one anchor frame, whose step is computed once (by the first) for both."""

    slots: tuple[PassSlot, ...]
    indices: tuple[int, ...]
    shared: bool
    concurrent: bool  # the steps to compute may run at once (their stage calls meet in a batcher)

    @property
    def to_compute(self) -> tuple[tuple[PassSlot, int], ...]:
        """(slot, frame index) of each step a driver computes this round."""
        pairs = tuple(zip(self.slots, self.indices))
        return pairs[:1] if self.shared else pairs


Step = tuple["PassState", "FrameResult"]
Committed = tuple[PassSlot, int, "PassState", "FrameResult"]


def pass_slots(anchors: tuple[int, ...], directions: Sequence[str], stream: bool = False) -> list[PassSlot]:
    """The passes of a run over sorted ``anchors``, not yet started (direction.pass_start)."""
    return [PassSlot(d, pass_start(d, anchors, stream)) for d in directions]


class PassScheduler:
    """Plans the rounds of one run. ``available``: frames that may be read now (a driver raises it as
    frames arrive); ``num_frames``: the run's length, None while a stream is open; ``open``: more
    frames may still come, so a forward pass at the last available frame waits instead of finishing;
    ``span``: (first, last) frames the passes stop at (None: the sequence's ends).

    Used as a context manager: a pass stepping in a round holds a batcher lease (other sessions' calls
    may wait for it), a pass that waits or is done holds none, and leaving releases them all.
    """

    def __init__(self, slots: Sequence[PassSlot], stages: Stages, num_frames: int | None, available: int,
                 open_stream: bool = False, span: tuple[int, int] | None = None) -> None:
        self.slots = list(slots)
        self.stages = stages
        self.num_frames = num_frames
        self.available = available
        self.open = open_stream
        self.span = span  # (first, last): the passes stop there (a run that recomputes one correction's frames)
        self._leases: dict[str, ClientLease] = {}

    def __enter__(self) -> PassScheduler:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for lease in self._leases.values():
            lease.release()
        self._leases.clear()

    def finished(self, slot: PassSlot) -> bool:
        if slot.state is None:
            return False
        first, last = self.span if self.span is not None else (0, None)
        if slot.direction == BACKWARD:
            return slot.state.cursor < first
        end = self.num_frames if self.num_frames is not None else self.available
        if last is not None:
            end = min(end, last + 1)
        return slot.state.cursor >= end and not self.open

    def done(self) -> bool:
        return all(self.finished(s) for s in self.slots)

    def ready(self, slot: PassSlot) -> bool:
        """The pass has a frame to step on now."""
        limit = self.num_frames if self.num_frames is not None else self.available
        return not self.finished(slot) and 0 <= slot.next_index < min(limit, self.available)

    def waiting(self) -> bool:
        """Some pass waits for a frame not yet available (worth recounting the frames)."""
        if self.num_frames is not None and self.available >= self.num_frames:
            return False
        return any(not self.finished(s) and not self.ready(s) for s in self.slots)

    def next_round(self) -> Round | None:
        """The next round, or None when no pass can step (all finished, or waiting for frames)."""
        ready = tuple(s for s in self.slots if self.ready(s))
        self._lease(ready)
        if not ready:
            return None
        indices = tuple(s.next_index for s in ready)
        shared = self._shares_anchor(ready)
        concurrent = not shared and len(ready) > 1 and isinstance(self.stages, DynamicBatcher)
        return Round(ready, indices, shared, concurrent)

    def commit(self, rnd: Round, steps: Sequence[Step]) -> list[Committed]:
        """Take a round's computed steps (one per ``rnd.to_compute``, in order); every pass of the round
        moves on. Returns (slot, frame index, state, result) per pass in pass order."""
        if len(steps) != len(rnd.to_compute):
            raise ValueError(f"{len(steps)} steps for a round of {len(rnd.to_compute)}")
        if rnd.shared:
            state, res = steps[0]
            steps = [steps[0], (state.turned_backward(), res)]
        out: list[Committed] = []
        for slot, t, (state, res) in zip(rnd.slots, rnd.indices, steps):
            slot.state = state
            out.append((slot, t, state, res))
        return out

    def _shares_anchor(self, ready: tuple[PassSlot, ...]) -> bool:
        if [s.direction for s in ready] != [FORWARD, BACKWARD] or any(s.state is not None for s in ready):
            return False
        last = self.num_frames - 1 if self.num_frames is not None else None
        return shares_anchor_step(ready[0].start, ready[1].start, last)

    def _lease(self, ready: tuple[PassSlot, ...]) -> None:
        """The passes stepping this round, and only they, are batcher clients."""
        for slot in self.slots:
            stepping = any(s is slot for s in ready)
            if stepping and slot.direction not in self._leases:
                self._leases[slot.direction] = client_lease(self.stages)
            elif not stepping and slot.direction in self._leases:
                self._leases.pop(slot.direction).release()
