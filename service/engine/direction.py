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


def owner(t: int, anchors: tuple[int, ...], passes: tuple[str, ...], stream: bool = False,
          span: tuple[int, int] | None = None) -> str | None:
    """Which pass of a run over sorted ``anchors`` publishes frame t: every frame is published exactly once.
    Between two anchors the nearer one's pass (forward on a tie); while streaming, forward owns every
    frame from the first anchor on. A run limited to ``span`` (first, last frame) publishes nothing outside."""
    if span is not None and not span[0] <= t <= span[1]:
        return None
    first, last = anchors[0], anchors[-1]
    fwd, bwd = FORWARD in passes, BACKWARD in passes
    if stream:
        return FORWARD if t >= first and fwd else (BACKWARD if t < first and bwd else None)
    if t >= first and fwd and (t >= last or not bwd):
        return FORWARD
    if t <= last and bwd and (t < first or not fwd):
        return BACKWARD
    if not (fwd and bwd):
        return None
    before = max(a for a in anchors if a <= t)
    after = min(a for a in anchors if a >= t)
    return FORWARD if t - before <= after - t else BACKWARD


def pass_start(direction: str, anchors: tuple[int, ...], stream: bool = False) -> int:
    """The annotated frame a pass over sorted ``anchors`` begins from: forward the first, backward the
    last (the first as well while streaming, where corrections only re-anchor the forward pass)."""
    return anchors[0] if direction == FORWARD or stream else anchors[-1]


def cell(j: int, others: tuple[int, ...], num_frames: int) -> tuple[int, int]:
    """The frames annotated frame ``j`` owns among the other annotated frames (owner's rule: the nearer
    anchor, the earlier one on a tie): (first, last). What a correction at j alone can change."""
    before = [a for a in others if a < j]
    after = [a for a in others if a > j]
    first = (max(before) + j) // 2 + 1 if before else 0
    last = (j + min(after)) // 2 if after else num_frames - 1
    return first, last
