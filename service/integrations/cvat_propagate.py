"""Both directions for CVAT users: a task's (or job's) shapes on one frame, propagated through every frame
by the service, uploaded back as shapes.

CVAT's UI tracks forward one frame at a time; this pulls the frames and the shapes drawn on frame K with
cvat-sdk, runs one propagation forward and backward on the service (REST), and adds a shape of the drawn
type with the drawn label on every other frame where the object is: masks as shapes, boxes and polygons as
tracks (CVAT interpolates those; it does not interpolate masks). Needs
the optional dependency cvat-sdk (``pip install imos-serve[cvat]``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from service.errors import InvalidInput, InvalidMask

TYPES = ("mask", "polygon", "rectangle")
TRACKED = ("polygon", "rectangle")  # CVAT interpolates these along a track; masks stay shapes per frame
SOURCE = "semi-auto"
Segmenter = Callable[[list[np.ndarray], np.ndarray, int], list[np.ndarray]]


@dataclass(frozen=True)
class Drawn:
    """One object drawn on frame K: its CVAT label id and shape type."""

    label_id: int
    kind: str


@dataclass(frozen=True)
class Outcome:
    """What was uploaded: shapes per object id (1-based, in drawing order) and the frames covered."""

    shapes: dict[int, int]
    frames: int


def propagate(target: Any, frame: int, segment: Segmenter) -> Outcome:
    """``target``: a cvat-sdk Task or Job proxy. Frames are the target's (task frame numbers)."""
    from cvat_sdk.api_client import models

    meta = target.get_meta()
    first, last = _frame_range(target, meta)
    deleted = set(meta.deleted_frames or [])
    numbers = [n for n in range(first, last + 1) if n not in deleted]
    if frame not in numbers:
        raise InvalidInput(f"frame {frame} is not a frame of this {_kind(target)} "
                           f"({first}..{last}{', deleted' if frame in deleted else ''})")
    frames = [_image(target.get_frame(n, quality="original")) for n in numbers]
    h, w = frames[0].shape[:2]
    drawn, mask = _drawn(target.get_annotations().shapes, frame, h, w)
    labels = segment(frames, mask, numbers.index(frame))
    shapes: list[Any] = []
    tracks: list[Any] = []
    counts = dict.fromkeys(range(1, len(drawn) + 1), 0)
    for obj, d in enumerate(drawn, start=1):
        found = [(n, r == obj) for n, r in zip(numbers, labels, strict=True) if n != frame and (r == obj).any()]
        counts[obj] = len(found)
        if d.kind in TRACKED:
            tracks += _tracks(models, d, found, frame, numbers)
        else:
            shapes += [models.LabeledShapeRequest(type=d.kind, frame=n, label_id=d.label_id,
                                                  points=_points(d.kind, inside), source=SOURCE)
                       for n, inside in found]
    if shapes or tracks:
        target.update_annotations(models.PatchedLabeledDataRequest(shapes=shapes, tracks=tracks), action=_create())
    return Outcome(counts, len(numbers))


def _tracks(models: Any, d: Drawn, found: list[tuple[int, np.ndarray]], frame: int,
            numbers: list[int]) -> list[Any]:
    """Boxes and polygons as tracks: one before the drawn frame (ending there, where the drawn shape is) and
    one after it, a keyframe on every frame, ended (outside) on the first frame the object is gone."""
    out = []
    for side in ([f for f in found if f[0] < frame], [f for f in found if f[0] > frame]):
        if not side:
            continue
        keys = [models.TrackedShapeRequest(type=d.kind, frame=n, points=_points(d.kind, inside), outside=False)
                for n, inside in side]
        have = {n for n, _ in side}
        for n, inside in side:
            after = numbers.index(n) + 1
            if after < len(numbers) and numbers[after] not in have:
                keys.append(models.TrackedShapeRequest(type=d.kind, frame=numbers[after],
                                                       points=_points(d.kind, inside), outside=True))
        keys.sort(key=lambda k: k.frame)
        out.append(models.LabeledTrackRequest(label_id=d.label_id, frame=keys[0].frame, shapes=keys, source=SOURCE))
    return out


def _kind(target: Any) -> str:
    return "job" if hasattr(target, "task_id") else "task"


def _frame_range(target: Any, meta: Any) -> tuple[int, int]:
    """A job's frames are its segment of the task; a task's are 0..size-1 (a video's meta lists one frame)."""
    if _kind(target) == "job":
        return int(target.start_frame), int(target.stop_frame)
    size = int(getattr(meta, "size", 0) or len(meta.frames))
    return 0, size - 1


def _create() -> Any:
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    return AnnotationUpdateAction.CREATE


def _image(raw: io.RawIOBase) -> np.ndarray:
    img = Image.open(io.BytesIO(raw.read()))
    return np.asarray(img.convert("L" if img.mode in ("L", "I;16", "I") else "RGB"))


def _drawn(shapes: Sequence[Any], frame: int, h: int, w: int) -> tuple[list[Drawn], np.ndarray]:
    """The objects drawn on ``frame`` (supported types, in z order) and their index mask [H, W]."""
    mine = sorted((s for s in shapes if s.frame == frame and str(s.type) in TYPES),
                  key=lambda s: getattr(s, "z_order", 0) or 0)
    if not mine:
        raise InvalidMask(f"no mask, polygon or rectangle is drawn on frame {frame}: draw the objects there first")
    mask = np.zeros((h, w), np.uint8)
    for obj, s in enumerate(mine, start=1):
        mask[_bitmap(str(s.type), list(s.points), h, w)] = obj
    return [Drawn(int(s.label_id), str(s.type)) for s in mine], mask


def _bitmap(kind: str, points: list[float], h: int, w: int) -> np.ndarray:
    if kind == "mask":
        from cvat_sdk.masks import decode_mask

        return np.asarray(decode_mask(points, image_width=w, image_height=h), bool)
    canvas = Image.new("L", (w, h), 0)
    if kind == "rectangle":
        x1, y1, x2, y2 = (int(round(v)) for v in points[:4])
        ImageDraw.Draw(canvas).rectangle([x1, y1, x2 - 1, y2 - 1], fill=1)
    else:
        ImageDraw.Draw(canvas).polygon(list(zip(points[::2], points[1::2])), fill=1, outline=1)
    return np.asarray(canvas) != 0


def _points(kind: str, inside: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(inside)
    if kind == "rectangle":
        return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    if kind == "mask":
        from cvat_sdk.masks import encode_mask

        return [float(v) for v in encode_mask(inside)]
    import cv2

    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    best = max(contours, key=cv2.contourArea).reshape(-1, 2)
    if len(best) < 3:
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        return [x0, y0, x1, y0, x1, y1, x0, y1]
    return [float(v) for v in best.flatten()]
