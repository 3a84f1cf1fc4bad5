"""PassState: everything one pass (one direction of one run over one sequence) remembers, as a value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from service.engine.direction import BACKWARD, FORWARD
from service.engine.preprocess import Geometry
from service.engine.processor import DirectionState
from service.engine.spec import MemoryConfig

__all__ = ["BACKWARD", "FORWARD", "PassState"]


@dataclass(frozen=True)
class PassState:
    """One direction of one sequence.

    direction: "forward" or "backward"; anchor: the annotated frame it started
    from; cursor: the next frame index it will process (anchor +-1 per step);
    num_frames: frames known when it started (None for an open stream);
    object_ids: label value of each object channel (channel i+1 <-> object_ids[i]);
    model: "name:version" of the weights that produced the memory; weights: the key of the
    per-sequence adapted weights it runs on ("" = the model's own; engine.adaptation).
    """

    direction: str
    anchor: int
    cursor: int
    num_frames: int | None
    object_ids: tuple[int, ...]
    geometry: Geometry
    config: MemoryConfig
    model: str
    core: DirectionState
    weights: str = ""

    @property
    def step_sign(self) -> int:
        return 1 if self.direction == FORWARD else -1

    @property
    def finished(self) -> bool:
        if self.direction == BACKWARD:
            return self.cursor < 0
        return self.num_frames is not None and self.cursor >= self.num_frames

    def turned_backward(self) -> PassState:
        """The backward pass's state after the anchor step, from the forward pass's: the anchor step is
        the same computation in both directions (same frame, mask and empty memory, memorised by both)."""
        return dataclasses.replace(self, direction=BACKWARD, cursor=self.anchor - 1)

    def is_last(self, index: int) -> bool:
        """True for the final frame of this direction (segmented, never memorised)."""
        if self.direction == BACKWARD:
            return index == 0
        return self.num_frames is not None and index == self.num_frames - 1
