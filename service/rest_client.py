"""A small REST client of iMOS Serve (sessions + Server-Sent Events), used by ``imos segment --server http://...``."""

from __future__ import annotations

import io
import json
from typing import Callable, Iterator

import httpx
import numpy as np

from service.errors import ImosError, InvalidInput, NotFound, StoreUnavailable, TooLarge

ProgressCb = Callable[[int, int], None]


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

    def close(self) -> None:
        self.http.close()

    def segment(self, frames: list[np.ndarray], mask: np.ndarray, frame: int, direction: str = "both",
                settings: dict[str, str] | None = None, progress: ProgressCb | None = None) -> list[np.ndarray]:
        """Create a session, annotate, propagate with live progress, download every mask, delete."""
        r = self.http.post("/v1/sessions", files={"sequence": ("frames.npy", _npy(np.stack(frames)))},
                           data={"settings": json.dumps(settings or {})})
        _raise_for(r)
        sid = r.json()["id"]
        try:
            _raise_for(self.http.put(f"/v1/sessions/{sid}/masks/{frame}", files={"mask": ("mask.npy", _npy(mask))}))
            _raise_for(self.http.post(f"/v1/sessions/{sid}/propagate", json={"direction": direction}))
            received = 0
            for ev in self.events(sid):
                if ev.get("event") == "error":
                    raise InvalidInput(str(ev.get("message")))
                if ev.get("event") == "frame" and progress is not None:
                    received += 1  # "published" counts per pass; the client wants the total
                    progress(received, int(ev.get("total") or len(frames)))
            r = self.http.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"})
            _raise_for(r)
            return list(np.load(io.BytesIO(r.content)))
        finally:
            self.http.delete(f"/v1/sessions/{sid}")

    def events(self, sid: str, after: str = "0") -> Iterator[dict[str, object]]:
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
