"""Which way a pass runs: the one Direction of engine, sessions, worker and evaluation (no torch here).

A StrEnum, so values compare equal to (and serialise as) the strings "forward" / "backward" stored in
checkpoints, events and requests; BOTH names a run of both passes.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"


FORWARD, BACKWARD = Direction.FORWARD, Direction.BACKWARD
BOTH = "both"
DIRECTIONS = (BOTH, FORWARD.value, BACKWARD.value)


def shares_anchor_step(forward_start: int, backward_start: int, last_frame: int | None) -> bool:
    """Both passes start on one anchor frame that is the last of neither: its step (same frame, mask and
    empty memory, memorised by both) is computed once and the state turned around for the backward pass.
    ``last_frame``: the sequence's last index, None while it is still arriving (a stream)."""
    return forward_start == backward_start and forward_start > 0 and forward_start != last_frame
