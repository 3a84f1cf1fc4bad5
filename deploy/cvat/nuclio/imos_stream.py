"""A shape tracked through one iMOS Serve live-stream session: the client both CVAT adapters share.

Only numpy, Pillow and urllib3, so it runs inside a CVAT agent and inside a Nuclio function image.
Start with the first image and the shape's mask; then each new image is appended to the session and
its propagated mask read back as soon as the service publishes it.
"""

import io
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import urllib3

WAIT_S = 120.0  # longest one frame's mask may take (a busy service queues the session behind others)


class ServiceError(RuntimeError):
    """iMOS Serve refused a call or gave no mask; the message names the call and the service's reason."""


@dataclass
class Track:
    """The session tracking one shape, and the next frame index it will be given (JSON-serialisable)."""

    session: str
    next_frame: int

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "next_frame": self.next_frame}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Track":
        return Track(str(d["session"]), int(d["next_frame"]))


class StreamClient:
    def __init__(self, url: str, api_key: str = "") -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0.2, allowed_methods=None))

    def start(self, image_png: bytes, mask: np.ndarray) -> Track:
        """A session holding the first image, with ``mask`` (bool [H, W]) as its object."""
        sid = self._call("POST", "/v1/sessions", {"sequence": ("frame.png", image_png, "image/png"),
                                                  "stream": "true"})["id"]
        self._call("PUT", f"/v1/sessions/{sid}/masks/0", {"mask": ("mask.png", png(mask), "image/png")})
        return Track(sid, 1)

    def step(self, track: Track, image_png: bytes) -> np.ndarray:
        """Append the next image; its mask (bool [H, W]). Advances ``track``."""
        t = track.next_frame
        self._call("POST", f"/v1/sessions/{track.session}/frames", {"sequence": ("frame.png", image_png, "image/png")})
        track.next_frame = t + 1
        return np.asarray(PIL.Image.open(io.BytesIO(self._mask(track.session, t)))) != 0

    def _mask(self, sid: str, t: int) -> bytes:
        end = time.monotonic() + WAIT_S
        while True:
            resp = self.http.request("GET", f"{self.url}/v1/sessions/{sid}/masks/{t}", headers=self.headers)
            if resp.status == 200:
                return bytes(resp.data)
            if resp.status != 404 or "no mask" not in _detail(resp) or time.monotonic() > end:
                raise ServiceError(f"iMOS Serve gave no mask for frame {t}: HTTP {resp.status} {_detail(resp)}")
            time.sleep(0.02)

    def _call(self, method: str, path: str, fields: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.request(method, f"{self.url}{path}", fields=fields, headers=self.headers)
        if resp.status >= 300:
            raise ServiceError(f"iMOS Serve refused {method} {path}: HTTP {resp.status} {_detail(resp)}")
        out: dict[str, Any] = json.loads(resp.data) if resp.data else {}
        return out


def png(image: np.ndarray) -> bytes:
    """uint8 / bool image -> lossless PNG bytes."""
    buf = io.BytesIO()
    PIL.Image.fromarray(image.astype(np.uint8) if image.dtype == bool else image).save(buf, format="PNG")
    return buf.getvalue()


def _detail(resp: urllib3.BaseHTTPResponse) -> str:
    try:
        return str(json.loads(resp.data).get("detail", ""))
    except (ValueError, AttributeError):
        return ""
