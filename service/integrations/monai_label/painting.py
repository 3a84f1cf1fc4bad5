"""Which slices of a label volume the user painted, as annotations of the session's objects.

The module sends (or submits) the whole segmentation: the slice first painted, and after an answer, that
answer plus the user's fixes. So a slice is an annotation when it differs from the session's current result
(before any result: when it holds any label). Segments are matched by name: a name the session knows keeps
its object number, a new one gets the next; so the answer's values 1..K follow the session's objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidMask


@dataclass(frozen=True)
class Painted:
    """masks: frame -> object labels [H, W] int64 (0 = background) of every painted slice; names: object
    number -> segment name for all objects, known and new."""

    masks: dict[int, np.ndarray]
    names: dict[int, str]


def painted_slices(frames: Sequence[np.ndarray], value_names: Mapping[int, str], known: Mapping[int, str],
                   current: Sequence[np.ndarray] | None) -> Painted:
    """frames: the label file's slices [H, W] (its own values); value_names: value -> name ("" = not an
    object: the module's background or scribbles); known: the session's object -> name; current: its result
    per frame [H, W] (None before any run)."""
    values = sorted(int(v) for v in np.unique(np.concatenate([np.unique(f) for f in frames])) if v > 0)
    numbers, names = _numbers(values, value_names, known)
    lut = np.zeros(max(values, default=0) + 1, np.int64)
    for value, number in numbers.items():
        lut[value] = number
    masks: dict[int, np.ndarray] = {}
    for t, frame in enumerate(frames):
        objects = lut[np.clip(frame, 0, None)]
        if current is None:
            if objects.any():
                masks[t] = objects
        elif not np.array_equal(objects, current[t]):
            masks[t] = objects
    return Painted(masks, names)


def _numbers(values: Sequence[int], value_names: Mapping[int, str],
             known: Mapping[int, str]) -> tuple[dict[int, int], dict[int, str]]:
    """Label value -> object number, and object number -> name after adding the new names."""
    names = dict(known)
    by_name = {n: k for k, n in names.items()}
    numbers: dict[int, int] = {}
    for value in values:
        name = value_names.get(value, f"label {value}")
        if not name:
            continue
        if name not in by_name:
            by_name[name] = max(names, default=0) + 1
            names[by_name[name]] = name
        numbers[value] = by_name[name]
    return numbers, names


def require_painting(painted: Painted, had_result: bool) -> None:
    """Before any result, a label with nothing painted is an error (there is nothing to propagate)."""
    if not painted.masks and not had_result:
        raise InvalidMask("the label volume holds no painted slice: paint the structures on one slice first")
