"""The "first" and "best" evaluation protocols: which objects are given where, and what is scored.

Read from ``protocols.json`` when the data folder has one; otherwise derived from the
annotations exactly as the data README defines them:

- first: each object is given on the first annotated frame where it has a pixel (objects
  first appearing on the same frame are given together); forward only; each object is
  scored on every annotated frame after its own given frame.
- best: the annotated frame with the largest total foreground (ties: the earliest) gives
  every object present on it; both directions; those objects are scored on every other
  annotated frame. Objects absent there are neither given nor scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InvalidInput

PROTOCOLS = ("first", "best")


@dataclass(frozen=True)
class Prompt:
    """Objects given (their ground-truth masks) on one frame, by frame name."""

    frame: str
    objects: tuple[int, ...]


@dataclass(frozen=True)
class Protocol:
    """One sequence's protocol. direction: "forward" or "both"; prompts in frame order;
    scored: object id -> frame names scored for it (never its own given frame)."""

    name: str
    direction: str
    prompts: tuple[Prompt, ...]
    scored: Mapping[int, tuple[str, ...]]

    def to_json(self) -> dict[str, Any]:
        """The protocols.json form of this protocol."""
        return {"protocol": self.name, "direction": self.direction,
                "prompts": [{"frame": p.frame, "objects": list(p.objects)} for p in self.prompts],
                "scored": {str(o): list(f) for o, f in self.scored.items()}}


def _objects(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in np.unique(mask) if v != 0)


def derive_first(annotations: Mapping[str, np.ndarray]) -> Protocol:
    """The "first" protocol from annotations {frame name -> index mask [H, W]} (any order)."""
    names = sorted(annotations)
    first_seen: dict[int, str] = {}
    for name in names:
        for obj in _objects(annotations[name]):
            first_seen.setdefault(obj, name)
    given = sorted(set(first_seen.values()))
    prompts = tuple(Prompt(f, tuple(sorted(o for o, s in first_seen.items() if s == f))) for f in given)
    scored = {o: tuple(n for n in names if n > first_seen[o]) for o in sorted(first_seen)}
    return Protocol("first", "forward", prompts, scored)


def derive_best(annotations: Mapping[str, np.ndarray]) -> Protocol:
    """The "best" protocol from annotations {frame name -> index mask [H, W]} (any order)."""
    names = sorted(annotations)
    areas = [int(np.count_nonzero(annotations[n])) for n in names]
    anchor = names[int(np.argmax(areas))]  # argmax takes the earliest of equal areas
    objects = _objects(annotations[anchor])
    scored = {o: tuple(n for n in names if n != anchor) for o in objects}
    return Protocol("best", "both", (Prompt(anchor, objects),) if objects else (), scored)


def derive(name: str, annotations: Mapping[str, np.ndarray]) -> Protocol:
    if name == "first":
        return derive_first(annotations)
    if name == "best":
        return derive_best(annotations)
    raise InvalidInput(f"unknown protocol {name!r}; use one of {', '.join(PROTOCOLS)}")


def parse(entry: Mapping[str, Any], name: str) -> Protocol:
    """One protocol of a protocols.json sequence entry."""
    try:
        raw = entry[name]
        prompts = tuple(Prompt(str(p["frame"]), tuple(int(o) for o in p["objects"])) for p in raw["prompts"])
        scored = {int(o): tuple(str(f) for f in frames) for o, frames in raw["scored"].items()}
        direction = str(raw["direction"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"protocols.json: bad {name!r} entry ({exc!r})") from None
    if direction not in ("forward", "both"):
        raise InvalidInput(f"protocols.json: direction {direction!r} is not forward or both")
    return Protocol(name, direction, tuple(sorted(prompts, key=lambda p: p.frame)), scored)


def resolve(name: str, seq: str, annotations: Mapping[str, np.ndarray],
            table: Mapping[str, Any] | None) -> Protocol:
    """The protocol for one sequence: from the protocols.json table when it lists the sequence,
    else derived from the annotations."""
    if table is not None and seq in table and name in table[seq]:
        return parse(table[seq], name)
    return derive(name, annotations)
