"""iMOS Serve as a CVAT tracking function (CVAT Online / Enterprise agents, cvat-sdk auto-annotation).

Register and run it with CVAT's own CLI:

    cvat-cli function create-native "iMOS tracker" --function-file deploy/cvat/imos_tracker.py \\
        -p url=str:http://imos-host:8000 [-p api_key=str:KEY]
    cvat-cli function run-agent FUNCTION_ID --function-file deploy/cvat/imos_tracker.py \\
        -p url=str:http://imos-host:8000 [-p api_key=str:KEY]

Each tracked shape (a mask or a polygon) becomes a live-stream session on the service: the first image
and the shape as its annotation, then every image CVAT asks about is appended and its propagated mask
read back. The tracking state is only a handle to that session (its id and frame count), never the
memory bank, so the agent stays small and any service replica can answer. Returns None once the object
has ended. Needs cvat-sdk[masks] (numpy, Pillow) and urllib3; polygons also need OpenCV
(opencv-python-headless). CVAT keeps tracking states for 8 hours: run the service with
IMOS_SESSION_TTL_S=28800 (or more) so an idle session lives as long.
"""

# No `from __future__ import annotations`: cvat-cli executes this file as a module it does not register in
# sys.modules, where dataclasses cannot resolve string annotations.
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import cvat_sdk.auto_annotation as cvataa
import numpy as np
import PIL.Image
import PIL.ImageDraw
import urllib3
from cvat_sdk.masks import decode_mask, encode_mask

WAIT_S = 120.0  # longest one frame's mask may take (a busy service queues the session behind others)


@dataclass
class TrackState:
    """The session tracking one shape, and the next frame index it will be given."""

    session: str
    next_frame: int


class ImosTracker:
    spec = cvataa.TrackingFunctionSpec(supported_shape_types=["mask", "polygon"])

    def __init__(self, url: str, api_key: str = "") -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0.2, allowed_methods=None))

    def preprocess_image(self, context: cvataa.TrackingFunctionContext, image: PIL.Image.Image) -> bytes:
        """The image as a lossless PNG, what the service is sent."""
        buf = io.BytesIO()
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buf, format="PNG")
        return buf.getvalue()

    def init_tracking_state(self, context: cvataa.TrackingFunctionShapeContext, pp_image: bytes,
                            shape: cvataa.TrackableShape) -> TrackState:
        width, height = PIL.Image.open(io.BytesIO(pp_image)).size
        bitmap = _shape_bitmap(shape, width, height)
        if not bitmap.any():
            raise cvataa.BadFunctionError("the shape to track covers no pixel of the image")
        created = self._call("POST", "/v1/sessions", fields={"sequence": ("frame.png", pp_image, "image/png"),
                                                              "stream": "true"})
        sid = created["id"]
        self._call("PUT", f"/v1/sessions/{sid}/masks/0", fields={"mask": ("mask.png", _png(bitmap), "image/png")})
        return TrackState(sid, 1)

    def track(self, context: cvataa.TrackingFunctionShapeContext, pp_image: bytes,
              state: TrackState) -> cvataa.TrackableShape | None:
        t = state.next_frame
        self._call("POST", f"/v1/sessions/{state.session}/frames",
                   fields={"sequence": ("frame.png", pp_image, "image/png")})
        state.next_frame = t + 1
        mask = np.asarray(PIL.Image.open(io.BytesIO(self._mask(state.session, t)))) != 0
        if not mask.any():
            return None
        if context.original_shape_type == "mask":
            return cvataa.TrackableShape(type="mask", points=encode_mask(mask))
        return cvataa.TrackableShape(type="polygon", points=_outline(mask))

    def _mask(self, sid: str, t: int) -> bytes:
        """Frame t's mask as soon as the service has published it."""
        end = time.monotonic() + WAIT_S
        while True:
            resp = self.http.request("GET", f"{self.url}/v1/sessions/{sid}/masks/{t}", headers=self.headers)
            if resp.status == 200:
                return bytes(resp.data)
            if resp.status != 404 or "no mask" not in _detail(resp) or time.monotonic() > end:
                raise cvataa.BadFunctionError(f"iMOS Serve gave no mask for frame {t}: HTTP {resp.status} "
                                              f"{_detail(resp)}")
            time.sleep(0.02)

    def _call(self, method: str, path: str, fields: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.request(method, f"{self.url}{path}", fields=fields, headers=self.headers)
        if resp.status >= 300:
            raise cvataa.BadFunctionError(f"iMOS Serve refused {method} {path}: HTTP {resp.status} {_detail(resp)}")
        out: dict[str, Any] = json.loads(resp.data) if resp.data else {}
        return out


def create(url: str, api_key: str = "") -> ImosTracker:
    """The function object cvat-cli loads (-p url=str:... -p api_key=str:...)."""
    return ImosTracker(url, api_key)


def _detail(resp: urllib3.BaseHTTPResponse) -> str:
    try:
        return str(json.loads(resp.data).get("detail", ""))
    except (ValueError, AttributeError):
        return ""


def _shape_bitmap(shape: cvataa.TrackableShape, width: int, height: int) -> np.ndarray:
    if shape.type == "mask":
        return np.asarray(decode_mask(shape.points, image_width=width, image_height=height), bool)
    canvas = PIL.Image.new("L", (width, height), 0)
    xy = [(shape.points[i], shape.points[i + 1]) for i in range(0, len(shape.points) - 1, 2)]
    if len(xy) < 3:
        raise cvataa.BadFunctionError("a polygon needs at least three points")
    PIL.ImageDraw.Draw(canvas).polygon(xy, fill=1, outline=1)
    return np.asarray(canvas) != 0


def _png(bitmap: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(bitmap.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _outline(mask: np.ndarray) -> list[float]:
    """The outer contour of the mask's largest piece as flat [x1, y1, x2, y2, ...]."""
    try:
        import cv2
    except ImportError:
        raise cvataa.BadFunctionError("polygon tracking needs OpenCV: pip install opencv-python-headless") from None
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    best = max(contours, key=cv2.contourArea).reshape(-1, 2)
    if len(best) < 3:  # a piece of one or two pixels: its box
        x0, y0 = best.min(0)
        x1, y1 = best.max(0) + 1
        best = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return [float(v) for v in best.flatten()]
