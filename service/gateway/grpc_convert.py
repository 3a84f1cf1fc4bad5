"""Between protobuf messages of imos.v1 and the domain: frames, masks, options, events, status."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from service.errors import InvalidFrames, InvalidInput, InvalidMask, NotFound
from service.io.images import decode_image, decode_mask
from service.sessions.model import BACKWARD, BOTH, FORWARD, Event

if TYPE_CHECKING:  # the client imports this module too; it needs no session machinery
    from service.sessions.service import SessionService

Message = Any  # generated protobuf classes carry no static types


def image_from_proto(msg: Message, name: str) -> np.ndarray:
    """An Image message -> uint8 [H, W] or [H, W, C]."""
    kind = msg.WhichOneof("data")
    if kind == "encoded":
        return decode_image(msg.encoded, name)
    if kind != "raw":
        raise InvalidFrames(f"{name} has no image data: set `encoded` (PNG/JPEG bytes) or `raw` pixels")
    raw = msg.raw
    h, w, c = int(raw.height), int(raw.width), int(raw.channels) or 1
    if h < 1 or w < 1 or c not in (1, 3, 4):
        raise InvalidFrames(f"{name}: raw image of {h}x{w}x{c} is invalid (channels must be 1, 3 or 4)")
    if len(raw.pixels) != h * w * c:
        raise InvalidFrames(f"{name}: raw image holds {len(raw.pixels)} bytes but {h}x{w}x{c} needs {h * w * c}")
    arr = np.frombuffer(raw.pixels, np.uint8)
    return arr.reshape((h, w) if c == 1 else (h, w, c))


def mask_from_proto(msg: Message, name: str) -> np.ndarray:
    """A Mask message -> int64 labels [H, W]."""
    kind = msg.WhichOneof("data")
    if kind == "png":
        return decode_mask(msg.png, name)
    if kind != "raw":
        raise InvalidMask(f"{name} has no data: set `png` (index PNG) or `raw` labels")
    h, w = int(msg.raw.height), int(msg.raw.width)
    if h < 1 or w < 1 or len(msg.raw.labels) != h * w:
        raise InvalidMask(f"{name}: {len(msg.raw.labels)} raw labels do not fill {h}x{w}")
    return np.asarray(msg.raw.labels, dtype=np.int64).reshape(h, w)


def image_to_proto(pb2: ModuleType, frame: np.ndarray) -> Message:
    """uint8 pixels -> an Image with raw pixels (no encoding cost, lossless)."""
    arr = np.ascontiguousarray(frame, np.uint8)
    c = 1 if arr.ndim == 2 else int(arr.shape[2])
    raw = pb2.RawImage(pixels=arr.tobytes(), height=arr.shape[0], width=arr.shape[1], channels=c)
    return pb2.Image(raw=raw)


def mask_to_proto(pb2: ModuleType, labels: np.ndarray) -> Message:
    arr = np.asarray(labels)
    if arr.ndim != 2 or (arr.size and arr.min() < 0):
        raise InvalidMask(f"a mask must be a 2-D array of labels >= 0, got shape {arr.shape}")
    raw = pb2.RawMask(labels=arr.astype(np.int64).ravel().tolist(), height=arr.shape[0], width=arr.shape[1])
    return pb2.Mask(raw=raw)


def direction_name(pb2: ModuleType, value: int) -> str:
    """Direction enum -> the domain's name (UNSPECIFIED means both)."""
    names = {pb2.DIRECTION_UNSPECIFIED: BOTH, pb2.DIRECTION_BOTH: BOTH,
             pb2.DIRECTION_FORWARD: FORWARD, pb2.DIRECTION_BACKWARD: BACKWARD}
    if value not in names:
        raise InvalidInput(f"unknown direction value {value}")
    return names[value]


def direction_value(pb2: ModuleType, name: str | None) -> int:
    values = {BOTH: pb2.DIRECTION_BOTH, FORWARD: pb2.DIRECTION_FORWARD, BACKWARD: pb2.DIRECTION_BACKWARD}
    return values.get(name or "", pb2.DIRECTION_UNSPECIFIED)


def session_options(msg: Message, served: tuple[str, int]) -> tuple[dict[str, str], dict[str, str]]:
    """SessionOptions -> (memory settings, object names), after checking the model asked for."""
    name, version = served
    if msg.model and msg.model not in (name, f"{name}:{version}"):
        raise NotFound(f"model {msg.model!r} is not served here; this server runs {name}:{version}")
    return dict(msg.settings), dict(msg.labels)


def object_ids(png: bytes) -> list[int]:
    """Labels present in an index PNG, background excluded."""
    labels = decode_mask(png, "result mask", widen=False)
    # Runs for every streamed frame: count the (few) object pixels only, in the PNG's own dtype.
    return [int(i) for i in np.flatnonzero(np.bincount(labels[labels != 0]))]


def session_to_proto(pb2: ModuleType, st: dict[str, Any]) -> Message:
    """SessionService.status() -> a Session message."""
    run = st.get("run") or {}
    return pb2.Session(
        session_id=st["id"], num_frames=st["frames"], height=st["height"], width=st["width"],
        model=st["model"], streaming=bool(st["stream"]), annotated_frames=list(st["annotated_frames"]),
        state=st["state"], run_id=int(run.get("id", 0)), direction=direction_value(pb2, run.get("direction")),
        frames_done=int(st["frames_done"]), progress=float(st["progress"] or 0.0),
        settings={str(k): str(v) for k, v in st["settings"].items()},
        error_code=(st.get("error") or {}).get("code", ""), error_message=(st.get("error") or {}).get("message", ""))


@dataclass
class EventConverter:
    """Turns one session's events into (oneof field name, message) pairs, fetching each mask.

    Counts the frames sent per run, so progress means "masks of this run on this stream".
    """

    pb2: ModuleType
    sessions: SessionService
    sid: str
    tenant: str
    sent: dict[int, int] = field(default_factory=dict)

    async def convert(self, ev: Event) -> tuple[str, Message] | None:
        if ev.kind == "run-started":
            self.sent.setdefault(ev.run, 0)
            return "run_started", self.pb2.RunStarted(run_id=ev.run, total_frames=ev.total or 0)
        if ev.kind == "done":
            return "done", self.pb2.RunDone(run_id=ev.run, frames_done=self.sent.get(ev.run, 0),
                                            total_frames=ev.total or 0)
        if ev.kind == "frame" and ev.frame is not None:
            return "frame", await self._frame(ev)
        return None

    async def _frame(self, ev: Event) -> Message:
        # The stored result is the frame's latest mask: if a newer run already replaced
        # it, the client gets the newer one (it is the better answer).
        png = await self.sessions.mask_png(self.sid, self.tenant, int(ev.frame or 0))
        self.sent[ev.run] = self.sent.get(ev.run, 0) + 1
        progress = self.pb2.Progress(frames_done=self.sent[ev.run], total_frames=ev.total or 0)
        return self.pb2.FrameResult(frame=int(ev.frame or 0), direction=direction_value(self.pb2, ev.direction),
                                    run_id=ev.run, mask_png=png, object_ids=object_ids(png), progress=progress)
