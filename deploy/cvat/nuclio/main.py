"""iMOS Serve as a CVAT (community edition) tracker: a Nuclio function speaking CVAT's tracker protocol.

CVAT sends ``{"image": base64, "shapes": [...], "states": [...]}`` and expects ``{"shapes": [...],
"states": [...]}``, one of each per tracked shape. A shape without a state starts tracking on this
image; one with a state is looked for on it. Shapes come in two forms: the old one, a rectangle as
``[x1, y1, x2, y2]`` (CVAT's Trackers tab), answered in kind; and the new one, ``{"type", "points"}``
with type rectangle, polygon or mask (CVAT's encoding), answered as the same type. A state is the
handle of the shape's live-stream session on the service (``{"session", "next_frame"}``), which CVAT
signs and keeps for up to 8 hours: run the service with IMOS_SESSION_TTL_S=28800 or more. Where the
object has ended the shape comes back as null and tracking stops.

Configure with the function's environment: IMOS_URL (the gateway) and IMOS_API_KEY (when keys are on).
"""

import base64
import io
import json
import math
import os
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
from imos_stream import ServiceError, StreamClient, Track

SHAPE_TYPES = ("rectangle", "polygon", "mask")


def init_context(context: Any) -> None:
    context.user_data.client = StreamClient(os.environ.get("IMOS_URL", "http://imos-gateway:8000"),
                                            os.environ.get("IMOS_API_KEY", ""))


def handler(context: Any, event: Any) -> Any:
    try:
        body = event.body if isinstance(event.body, dict) else json.loads(event.body)
        image = _image(body.get("image"))
        shapes, states = list(body.get("shapes") or []), list(body.get("states") or [])
        out = {"shapes": [], "states": []}
        for i, shape in enumerate(shapes):
            state = states[i] if i < len(states) else None
            got, track = _one(context.user_data.client, image, shape, state)
            out["shapes"].append(got)
            out["states"].append(track.to_dict())
        return context.Response(body=json.dumps(out), headers={}, content_type="application/json", status_code=200)
    except (ValueError, KeyError, TypeError) as exc:
        return _error(context, 400, f"bad tracker request: {exc}")
    except ServiceError as exc:
        return _error(context, 502, str(exc))


def _one(client: StreamClient, image: PIL.Image.Image, shape: Any, state: Any) -> tuple[Any, Track]:
    """(the shape on this image or None, the track) for one shape of the request."""
    old = isinstance(shape, list)
    kind, points = ("rectangle", shape) if old else (shape["type"], shape["points"])
    if kind not in SHAPE_TYPES:
        raise ValueError(f"shape type {kind!r} is not tracked (one of {', '.join(SHAPE_TYPES)})")
    png = _png(image)
    if state is None:
        track = client.start(png, _bitmap(kind, points, image.size))
        return shape, track
    track = Track.from_dict(state)
    mask = client.step(track, png)
    if not mask.any():
        return None, track
    found = _shape_of(kind, mask)
    return (found if old else {"type": kind, "points": found}), track


def _image(data: Any) -> PIL.Image.Image:
    if not isinstance(data, str):
        raise ValueError("image must be a base64 string")
    image = PIL.Image.open(io.BytesIO(base64.b64decode(data)))
    return image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode)


def _png(image: PIL.Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _bitmap(kind: str, points: list[float], size: tuple[int, int]) -> np.ndarray:
    """The shape's pixels, bool [H, W]."""
    w, h = size
    if kind == "mask":
        return _decode_cvat_mask(points, w, h)
    canvas = PIL.Image.new("L", (w, h), 0)
    draw = PIL.ImageDraw.Draw(canvas)
    if kind == "rectangle":
        # CVAT's box edges: x1, y1 inclusive, x2, y2 exclusive (the box of pixels 0..9 is [0, 10])
        x1, y1, x2, y2 = (float(v) for v in points[:4])
        draw.rectangle([math.floor(x1), math.floor(y1), math.ceil(x2) - 1, math.ceil(y2) - 1], fill=1)
    else:
        draw.polygon([(points[i], points[i + 1]) for i in range(0, len(points) - 1, 2)], fill=1, outline=1)
    bitmap = np.asarray(canvas) != 0
    if not bitmap.any():
        raise ValueError("the shape covers no pixel of the image")
    return bitmap


def _shape_of(kind: str, mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if kind == "rectangle":
        return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    if kind == "mask":
        return _encode_cvat_mask(mask)
    import cv2  # polygons need OpenCV in the function image

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [float(v) for v in max(contours, key=cv2.contourArea).reshape(-1)]


def _decode_cvat_mask(points: list[float], width: int, height: int) -> np.ndarray:
    """CVAT's mask points: run lengths (starting with background) over the box, then the box x1, y1, x2, y2."""
    x1, y1, x2, y2 = (int(v) for v in points[-4:])
    box = np.zeros((y2 - y1 + 1) * (x2 - x1 + 1), bool)
    pos, value = 0, False
    for run in points[:-4]:
        box[pos:pos + int(run)] = value
        pos, value = pos + int(run), not value
    out = np.zeros((height, width), bool)
    out[y1:y2 + 1, x1:x2 + 1] = box.reshape(y2 - y1 + 1, x2 - x1 + 1)
    return out


def _encode_cvat_mask(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    flat = mask[y1:y2 + 1, x1:x2 + 1].ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0] + runs
    return [float(r) for r in runs] + [float(x1), float(y1), float(x2), float(y2)]


def _error(context: Any, status: int, message: str) -> Any:
    context.logger.warn(message)
    return context.Response(body=json.dumps({"error": message}), headers={}, content_type="application/json",
                            status_code=status)
