"""Label Studio regions <-> per-frame index masks.

In: the regions a user drew (an interactive request's context, or a task's annotation or draft) become
the masks of the frames they were drawn on. A label value names one object (all regions carrying it are
that object); a region without a label is an object of its own. Out: every frame's propagated mask
becomes Label Studio results: one ``videorectangle`` track per object (1-based frames, percent
coordinates) for a video, and ``brushlabels`` regions per page (``item_index``) for an image sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InvalidMask
from service.integrations.label_studio import rle
from service.integrations.label_studio.config import Target

_TYPES = {"video": ("videorectangle",), "images": ("brushlabels", "brush")}


@dataclass(frozen=True)
class Prompt:
    """What the user gave: frame index -> index mask [H, W] (0 = background, i = object i), and the
    label value of each object id (\"\" for an unlabelled region)."""

    masks: Mapping[int, np.ndarray]
    names: Mapping[int, str]


def prompt(target: Target, results: Iterable[Mapping[str, Any]], height: int, width: int,
           num_frames: int) -> Prompt:
    """The masks drawn in ``results`` (Label Studio result items) on the target control."""
    masks: dict[int, np.ndarray] = {}
    ids: dict[str, int] = {}
    names: dict[int, str] = {}
    for i, item in enumerate(results):
        if not isinstance(item, Mapping) or item.get("to_name") != target.to_name \
                or item.get("type") not in _TYPES[target.kind]:
            continue
        value = item.get("value") or {}
        if not isinstance(value, Mapping):
            raise InvalidMask("a region's value must be an object")
        label = _label(value)
        key = label or f"#region-{i}"
        obj = ids.setdefault(key, len(ids) + 1)
        names[obj] = label
        for frame, region in _drawn(target, item, value, height, width, num_frames):
            page = masks.setdefault(frame, np.zeros((height, width), np.uint8))
            page[region] = obj
    if not masks:
        raise InvalidMask(f"nothing is drawn on {target.to_name!r}: draw one region on one frame first")
    return Prompt(masks, names)


def _label(value: Mapping[str, Any]) -> str:
    for key in ("labels", "brushlabels", "videorectangle"):
        got = value.get(key)
        if isinstance(got, list) and got:
            return str(got[0])
    return ""


def _drawn(target: Target, item: Mapping[str, Any], value: Mapping[str, Any], height: int, width: int,
           num_frames: int) -> list[tuple[int, np.ndarray]]:
    """(frame index, bool region [H, W]) for each frame the item marks."""
    if target.kind == "video":
        # Every keyframe's box holds on its own frame ("enabled": false only ends the track after it).
        out = []
        for key in value.get("sequence") or []:
            try:
                frame = int(key.get("frame", 1)) - 1
            except (AttributeError, TypeError, ValueError):
                raise InvalidMask("a video rectangle keyframe needs an integer frame") from None
            _check_frame(frame, num_frames)
            out.append((frame, _box(key, height, width)))
        return out
    try:
        frame = int(item.get("item_index") or 0) if target.paged else 0
    except (TypeError, ValueError):
        raise InvalidMask("a brush region's item_index must be a page number") from None
    _check_frame(frame, num_frames)
    if value.get("format", "rle") != "rle" or "rle" not in value:
        raise InvalidMask("a brush region must carry Label Studio RLE (value.format 'rle')")
    return [(frame, rle.decode(value["rle"], height, width))]


def _check_frame(frame: int, num_frames: int) -> None:
    if not 0 <= frame < num_frames:
        raise InvalidMask(f"a region is drawn on frame {frame + 1}, outside the task's {num_frames} frames")


def _box(key: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """A keyframe's box (percent of the frame) as a filled region."""
    try:
        x, y = float(key["x"]) * width / 100, float(key["y"]) * height / 100
        w, h = float(key["width"]) * width / 100, float(key["height"]) * height / 100
    except (KeyError, TypeError, ValueError):
        raise InvalidMask("a video rectangle keyframe needs numeric x, y, width and height") from None
    out = np.zeros((height, width), bool)
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 <= x0 or y1 <= y0:
        raise InvalidMask("a video rectangle keyframe is empty or outside the frame")
    out[y0:y1, x0:x1] = True
    return out


def video_results(target: Target, labels: Mapping[int, np.ndarray], names: Mapping[int, str], num_frames: int,
                  fps: float) -> list[dict[str, Any]]:
    """One videorectangle track per object over the frames in ``labels`` (frame index -> index mask)."""
    out = []
    for obj, name in sorted(names.items()):
        sequence = _track(labels, obj, fps)
        if not sequence:
            continue
        value: dict[str, Any] = {"sequence": sequence, "framesCount": num_frames,
                                 "duration": num_frames / fps if fps > 0 else num_frames}
        if name:
            value["labels"] = [name]
        out.append({"id": f"imos-{obj}", "from_name": target.from_name, "to_name": target.to_name,
                    "type": "videorectangle", "origin": "prediction", "value": value})
    return out


def _track(labels: Mapping[int, np.ndarray], obj: int, fps: float) -> list[dict[str, Any]]:
    """A keyframe per frame where the object is; the last frame before each absence ends the track there."""
    frames = sorted(labels)
    present = {t: labels[t] == obj for t in frames}
    seq = []
    for t in frames:
        inside = present[t]
        if not inside.any():
            continue
        ys, xs = np.nonzero(inside)
        h, w = inside.shape
        nxt = present.get(t + 1)
        seq.append({"frame": t + 1, "enabled": nxt is not None and bool(nxt.any()), "rotation": 0,
                    "x": 100 * xs.min() / w, "y": 100 * ys.min() / h,
                    "width": 100 * (xs.max() + 1 - xs.min()) / w, "height": 100 * (ys.max() + 1 - ys.min()) / h,
                    "time": t / fps if fps > 0 else float(t)})
    return seq


def image_results(target: Target, labels: Mapping[int, np.ndarray], names: Mapping[int, str],
                  pages: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """A brushlabels region per page and object (``item_index`` on a paged image)."""
    out = []
    for t in sorted(labels) if pages is None else pages:
        mask = labels[t]
        h, w = mask.shape
        for obj, name in sorted(names.items()):
            inside = mask == obj
            if not inside.any():
                continue
            value: dict[str, Any] = {"format": "rle", "rle": rle.encode(inside)}
            if name:
                value["brushlabels"] = [name]
            item = {"id": f"imos-{obj}-{t}", "from_name": target.from_name, "to_name": target.to_name,
                    "type": "brushlabels", "origin": "prediction", "original_width": w, "original_height": h,
                    "image_rotation": 0, "value": value}
            if target.paged:
                item["item_index"] = t
            out.append(item)
    return out
