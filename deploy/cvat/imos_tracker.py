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
has ended. Keep deploy/cvat/nuclio/imos_stream.py where it is (the session client it shares with the
Nuclio function). Needs cvat-sdk[masks] (numpy, Pillow) and urllib3; polygons also need OpenCV
(opencv-python-headless). CVAT keeps tracking states for 8 hours: run the service with
IMOS_SESSION_TTL_S=28800 (or more) so an idle session lives as long.
"""

import io
import sys
from pathlib import Path

import cvat_sdk.auto_annotation as cvataa
import numpy as np
import PIL.Image
import PIL.ImageDraw
from cvat_sdk.masks import decode_mask, encode_mask

# The session client lives beside the Nuclio handler (deploy/cvat/nuclio/), which deploys it alone.
sys.path.insert(0, str(Path(__file__).resolve().parent / "nuclio"))
from imos_stream import ServiceError, StreamClient, Track  # noqa: E402


class ImosTracker:
    spec = cvataa.TrackingFunctionSpec(supported_shape_types=["mask", "polygon"])

    def __init__(self, url: str, api_key: str = "") -> None:
        self.client = StreamClient(url, api_key)

    def preprocess_image(self, context: cvataa.TrackingFunctionContext, image: PIL.Image.Image) -> bytes:
        """The image as a lossless PNG, what the service is sent."""
        buf = io.BytesIO()
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buf, format="PNG")
        return buf.getvalue()

    def init_tracking_state(self, context: cvataa.TrackingFunctionShapeContext, pp_image: bytes,
                            shape: cvataa.TrackableShape) -> Track:
        width, height = PIL.Image.open(io.BytesIO(pp_image)).size
        bitmap = _shape_bitmap(shape, width, height)
        if not bitmap.any():
            raise cvataa.BadFunctionError("the shape to track covers no pixel of the image")
        try:
            return self.client.start(pp_image, bitmap)
        except ServiceError as exc:
            raise cvataa.BadFunctionError(str(exc)) from None

    def track(self, context: cvataa.TrackingFunctionShapeContext, pp_image: bytes,
              state: Track) -> cvataa.TrackableShape | None:
        try:
            mask = self.client.step(state, pp_image)
        except ServiceError as exc:
            raise cvataa.BadFunctionError(str(exc)) from None
        if not mask.any():
            return None
        if context.original_shape_type == "mask":
            return cvataa.TrackableShape(type="mask", points=encode_mask(mask))
        return cvataa.TrackableShape(type="polygon", points=_outline(mask))


def create(url: str, api_key: str = "") -> ImosTracker:
    """The function object cvat-cli loads (-p url=str:... -p api_key=str:...)."""
    return ImosTracker(url, api_key)


def _shape_bitmap(shape: cvataa.TrackableShape, width: int, height: int) -> np.ndarray:
    if shape.type == "mask":
        return np.asarray(decode_mask(shape.points, image_width=width, image_height=height), bool)
    canvas = PIL.Image.new("L", (width, height), 0)
    xy = [(shape.points[i], shape.points[i + 1]) for i in range(0, len(shape.points) - 1, 2)]
    if len(xy) < 3:
        raise cvataa.BadFunctionError("a polygon needs at least three points")
    PIL.ImageDraw.Draw(canvas).polygon(xy, fill=1, outline=1)
    return np.asarray(canvas) != 0


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
