"""Session domain values: metadata, propagation runs, events."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from service.engine.direction import BACKWARD, BOTH, DIRECTIONS, FORWARD, owner, pass_start

__all__ = ["BACKWARD", "BOTH", "DIRECTIONS", "FORWARD", "Attempts", "Event", "Failure", "PassProgress", "RunSpec",
           "SessionMeta"]


@dataclass(frozen=True)
class RunSpec:
    """One propagation of a session.

    anchors: annotated frames it uses (sorted); stream: frames keep arriving
    (no known last frame, corrections only re-anchor the forward pass);
    num_frames: frames of the sequence (None while streaming); span: (first, last) frame a run that
    recomputes only what one correction changed is limited to (None: the whole sequence).
    """

    id: int
    direction: str
    anchors: tuple[int, ...]
    stream: bool = False
    num_frames: int | None = None
    span: tuple[int, int] | None = None

    @property
    def total(self) -> int | None:
        """Frames the run publishes."""
        return self.span[1] - self.span[0] + 1 if self.span is not None else self.num_frames

    def passes(self) -> tuple[str, ...]:
        return (FORWARD, BACKWARD) if self.direction == BOTH else (self.direction,)

    def start(self, direction: str) -> int:
        """The annotated frame a pass begins from."""
        return pass_start(direction, self.anchors, self.stream)

    def owner(self, t: int) -> str | None:
        """Which pass publishes frame t: every frame is published exactly once (engine.direction.owner)."""
        return owner(t, self.anchors, self.passes(), self.stream, self.span)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RunSpec:
        span = d.get("span")
        return RunSpec(int(d["id"]), d["direction"], tuple(d["anchors"]), bool(d["stream"]), d.get("num_frames"),
                       (int(span[0]), int(span[1])) if span else None)


@dataclass(frozen=True)
class SessionMeta:
    """What a session is: its owner, frame geometry, model settings, current run."""

    id: str
    tenant: str
    created: float
    height: int
    width: int
    model: str
    settings: dict[str, str] = field(default_factory=dict)
    open: bool = False
    run: RunSpec | None = None
    labels: dict[str, str] = field(default_factory=dict)
    changed: tuple[int, ...] = ()  # frames annotated since the current run began (what a new run must reflect)

    def to_json(self) -> bytes:
        d = dataclasses.asdict(self)
        d["run"] = self.run.to_dict() if self.run else None
        return json.dumps(d).encode()

    @staticmethod
    def from_json(raw: bytes) -> SessionMeta:
        d = json.loads(raw)
        d["run"] = RunSpec.from_dict(d["run"]) if d.get("run") else None
        d["changed"] = tuple(d.get("changed") or ())
        return SessionMeta(**d)


@dataclass(frozen=True)
class PassProgress:
    """Where one pass of the current run stands (kept small so status reads are cheap)."""

    run: int
    cursor: int
    published: int
    finished: bool

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @staticmethod
    def from_json(raw: bytes) -> PassProgress:
        return PassProgress(**json.loads(raw))


@dataclass(frozen=True)
class Attempts:
    """How often workers have begun the current run without ending it cleanly.

    published: frames the run had published when the latest attempt began (an attempt that got
    further than the one before is progress, not a crash loop); last_code: the error code of the
    latest failed attempt ("worker_lost" while unknown: its worker died)."""

    run: int
    count: int
    published: int
    last_code: str = "worker_lost"

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @staticmethod
    def from_json(raw: bytes) -> Attempts:
        return Attempts(**json.loads(raw))


@dataclass(frozen=True)
class Failure:
    """How a run ended in failure: a stable error code and a message safe to show (no pixels, no PHI)."""

    run: int
    code: str
    message: str
    attempts: int
    at: float

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @staticmethod
    def from_json(raw: bytes) -> Failure:
        return Failure(**json.loads(raw))


@dataclass(frozen=True)
class Event:
    """One entry of a session's event stream (id assigned by the store)."""

    kind: str  # "frame" | "run-started" | "done" | "error" (the run failed: it ends there)
    run: int
    frame: int | None = None
    direction: str | None = None
    published: int = 0
    total: int | None = None
    message: str | None = None
    code: str | None = None  # error events: the stable error code (service.errors)
    id: str = ""

    def fields(self) -> dict[str, bytes]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "id"}
        return {"e": json.dumps(d).encode()}

    @staticmethod
    def parse(entry_id: str, fields: dict[str, bytes]) -> Event:
        return Event(**json.loads(fields["e"]), id=entry_id)
