"""A small REST client of iMOS Serve (sessions + Server-Sent Events), used by ``imos segment --server http://...``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np

from service.errors import ImosError, InvalidInput, NotFound, StoreUnavailable, TooLarge

ProgressCb = Callable[[int, int], None]
# Frames per append on a live stream: big enough that per-request costs are small, small enough that
# the server starts on the first ones while the rest are still being sent.
LIVE_CHUNK = 8


def _raise_for(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        detail = r.text
    cls: type[ImosError] = {404: NotFound, 413: TooLarge, 503: StoreUnavailable}.get(
        r.status_code, InvalidInput if r.status_code < 500 else ImosError)
    raise cls(f"server said {r.status_code}: {detail}")


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


class RestClient:
    """Talks to one service; every call raises the domain error matching the HTTP status."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 600.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.model: str | None = None  # "name:version" that computed the last segment() (the server says)

    def close(self) -> None:
        self.http.close()

    def segment(self, frames: list[np.ndarray], mask: np.ndarray, frame: int, direction: str = "both",
                settings: dict[str, str] | None = None, progress: ProgressCb | None = None,
                chunk: int = LIVE_CHUNK, live: bool = True) -> list[np.ndarray]:
        """Propagate ``mask`` (on ``frame``) through ``frames`` and return every frame's mask.

        With ``live`` (both directions only) it goes as a live stream: frames up to the annotated one,
        then the mask (the server starts at once), then the rest ``chunk`` frames at a time while the
        server computes, so uploading and computing overlap. Otherwise as a batch session (upload,
        annotate, propagate). Either way the session is deleted at the end.
        """
        live = live and direction == "both"
        head = frames[:frame + 1] if live else frames
        r = self.http.post("/v1/sessions", files={"sequence": ("frames.npy", _npy(np.stack(head)))},
                           data={"settings": json.dumps(settings or {}), "stream": str(live).lower()})
        _raise_for(r)
        sid = r.json()["id"]
        try:
            _raise_for(self.http.put(f"/v1/sessions/{sid}/masks/{frame}", files={"mask": ("mask.npy", _npy(mask))}))
            if live:
                for at in range(frame + 1, len(frames), max(1, chunk)):
                    part = np.stack(frames[at:at + chunk])
                    _raise_for(self.http.post(f"/v1/sessions/{sid}/frames",
                                              files={"sequence": ("frames.npy", _npy(part))}))
                _raise_for(self.http.post(f"/v1/sessions/{sid}/close"))
            else:
                _raise_for(self.http.post(f"/v1/sessions/{sid}/propagate", json={"direction": direction}))
            self._follow(sid, len(frames), progress)
            r = self.http.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"})
            _raise_for(r)
            status = self.http.get(f"/v1/sessions/{sid}")
            _raise_for(status)
            self.model = status.json().get("model")
            return list(np.load(io.BytesIO(r.content)))
        finally:
            self.http.delete(f"/v1/sessions/{sid}")

    def _follow(self, sid: str, total: int, progress: ProgressCb | None) -> None:
        """Wait for the run to finish, reporting frames as they come; raises the run's error."""
        received = 0
        for ev in self.events(sid):
            if ev.get("event") == "error":
                raise InvalidInput(str(ev.get("message")))
            if ev.get("event") == "frame" and progress is not None:
                received += 1  # "published" counts per pass; the client wants the total
                progress(received, int(ev.get("total") or total))

    def events(self, sid: str, after: str = "0") -> Iterator[dict[str, Any]]:
        """The session's events until its run is done (SSE)."""
        with self.http.stream("GET", f"/v1/sessions/{sid}/events", params={"after": after}) as r:
            _raise_for(r)
            fields: dict[str, str] = {}
            for line in r.iter_lines():
                if not line:
                    if "data" in fields:
                        yield {"event": fields.get("event"), "id": fields.get("id"), **json.loads(fields["data"])}
                    fields = {}
                    continue
                key, _, value = line.partition(": ")
                fields[key] = value
