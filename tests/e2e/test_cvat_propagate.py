"""`imos cvat propagate` with cvat-sdk against a recorded CVAT request/response set (no CVAT server runs
here): a loopback server answers the SDK's calls for one task and one job (server version, task/job,
data meta, frames, annotations) as CVAT 2.80's API documents them, and records the annotations the
command uploads. The SDK's own models parse every response, so a field it requires and we left out
fails the test. The uploaded masks must equal `imos segment` both ways from the drawn frame."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from cvat_sdk.masks import decode_mask, encode_mask
from PIL import Image

from service.cli.main import main
from tests.e2e.procs import imos_segment
from tests.medical_builders import dev_sequence

TASK, JOB, LABEL, LABEL2 = 5, 9, 31, 32


class RecordedCvat:
    """The responses of a CVAT 2.80 server for task TASK (frames 0..n-1) and its job JOB (frames 2..n-1)."""

    def __init__(self, frames: list[np.ndarray], shapes: list[dict[str, Any]]) -> None:
        self.frames, self.shapes = frames, shapes
        self.uploads: list[tuple[str, dict[str, Any]]] = []
        h, w = frames[0].shape[:2]
        n = len(frames)
        frame_meta = [{"name": f"{i:05d}.png", "width": w, "height": h, "related_files": 0} for i in range(n)]
        self.json = {
            "/api/server/about": {"name": "Computer Vision Annotation Tool", "description": "", "version": "2.80.0",
                                  "logo_url": "", "subtitle": ""},
            f"/api/tasks/{TASK}": {"id": TASK, "name": "polyp", "size": n, "mode": "annotation", "status": "annotation",
                                   "jobs": {"count": 1, "completed": 0, "validation": 0, "url": ""},
                                   "labels": {"url": ""}},
            f"/api/tasks/{TASK}/data/meta": {"chunks_updated_date": "2026-12-01T00:00:00Z", "frames": frame_meta,
                                             "deleted_frames": [], "size": n, "start_frame": 0, "stop_frame": n - 1,
                                             "frame_filter": "", "chunk_size": 36, "image_quality": 70},
            f"/api/jobs/{JOB}": {"id": JOB, "task_id": TASK, "start_frame": 2, "stop_frame": n - 1, "type": "annotation",
                                 "stage": "annotation", "state": "new", "issues": {"count": 0, "url": ""},
                                 "labels": {"url": ""}},
            f"/api/jobs/{JOB}/data/meta": {"chunks_updated_date": "2026-12-01T00:00:00Z", "frames": frame_meta[2:],
                                           "deleted_frames": [], "size": n - 2, "start_frame": 2, "stop_frame": n - 1,
                                           "frame_filter": "", "chunk_size": 36, "image_quality": 70},
        }

    def annotations(self) -> dict[str, Any]:
        return {"version": 0, "tags": [], "shapes": self.shapes, "tracks": []}

    def frame_png(self, number: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.frames[number]).save(buf, format="PNG")
        return buf.getvalue()


def _serve(cvat: RecordedCvat) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            path, query = url.path.rstrip("/"), parse_qs(url.query)
            if path in cvat.json:
                return self._send(200, json.dumps(cvat.json[path]).encode())
            if path.endswith("/annotations"):
                return self._send(200, json.dumps(cvat.annotations()).encode())
            if path.endswith("/data") and query.get("type") == ["frame"]:
                return self._send(200, cvat.frame_png(int(query["number"][0])), "image/png")
            return self._send(404, b'{"detail": "not recorded"}')

        def do_PATCH(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            cvat.uploads.append((self.path, body))
            return self._send(200, json.dumps({"version": 1, "tags": [], "tracks": [], **body}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _run(service: str, cvat: RecordedCvat, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    server, url = _serve(cvat)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", "pat-123")
    try:
        return main(["cvat", "propagate", "--server", url, "--task", str(TASK), "--service", service, *extra])
    finally:
        server.shutdown()


def test_masks_drawn_on_one_frame_come_back_on_every_frame(bundled_service: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    frames, k = frames[:8], 4
    h, w = frames[0].shape[:2]
    given = (masks[k] == 1)
    other = np.zeros_like(given)
    other[10:40, 20:60] = True  # a second object, a box away from the polyp
    shapes = [{"type": "mask", "frame": k, "label_id": LABEL, "points": encode_mask(given), "z_order": 0},
              {"type": "rectangle", "frame": k, "label_id": LABEL2, "points": [20.0, 10.0, 60.0, 40.0], "z_order": 1},
              {"type": "points", "frame": k, "label_id": LABEL, "points": [1.0, 1.0]}]
    cvat = RecordedCvat(frames, shapes)
    assert _run(bundled_service, cvat, monkeypatch, "--frame", str(k)) == 0
    (path, body), = cvat.uploads
    assert path == f"/api/tasks/{TASK}/annotations/?action=create"
    drawn = given.astype(np.uint8)
    drawn[other & ~given] = 2
    expected = imos_segment(frames, drawn, k, tmp_path / "cli")
    got = {(s["frame"], s["label_id"]): s for s in body["shapes"]}
    assert all(s["frame"] != k for s in body["shapes"]) and {s["source"] for s in body["shapes"]} == {"semi-auto"}
    assert {s["label_id"] for s in body["shapes"]} == {LABEL}  # the mask object: shapes; the box: tracks
    boxes = {}
    for track in body["tracks"]:
        assert track["label_id"] == LABEL2 and track["frame"] == track["shapes"][0]["frame"]
        boxes.update({ks["frame"]: ks for ks in track["shapes"] if not ks["outside"]})
    assert len(body["tracks"]) == 2 and k not in boxes  # one track on each side of the drawn frame
    for t in range(len(frames)):
        if t == k:
            continue
        mask_shape = got.get((t, LABEL))
        want = expected[t] == 1
        if not want.any():
            assert mask_shape is None
            continue
        assert mask_shape["type"] == "mask"
        np.testing.assert_array_equal(decode_mask(mask_shape["points"], image_width=w, image_height=h), want)
        ys, xs = np.nonzero(expected[t] == 2)
        if len(xs):
            assert boxes[t]["type"] == "rectangle"
            assert boxes[t]["points"] == [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_a_job_covers_its_own_frames_and_a_bad_frame_is_named(bundled_service: str, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    frames = frames[:6]
    shapes = [{"type": "polygon", "frame": 3, "label_id": LABEL,
               "points": [100.0, 100.0, 180.0, 100.0, 180.0, 170.0, 100.0, 170.0]}]
    cvat = RecordedCvat(frames, shapes)
    assert _run(bundled_service, cvat, monkeypatch, "--frame", "3", "--job", str(JOB)) == 0
    (path, body), = cvat.uploads
    assert path == f"/api/jobs/{JOB}/annotations/?action=create"
    assert not body["shapes"] and body["tracks"]
    keys = [ks for tr in body["tracks"] for ks in tr["shapes"]]
    assert {ks["frame"] for ks in keys if not ks["outside"]} <= {2, 4, 5} and {ks["type"] for ks in keys} == {"polygon"}
    assert "uploaded" in capsys.readouterr().out
    cvat = RecordedCvat(frames, shapes)
    assert _run(bundled_service, cvat, monkeypatch, "--frame", "1", "--job", str(JOB)) == 2
    assert "frame 1 is not a frame of this job (2..5)" in capsys.readouterr().err and not cvat.uploads
    cvat = RecordedCvat(frames, [])
    assert _run(bundled_service, cvat, monkeypatch, "--frame", "3") == 2
    assert "no mask, polygon or rectangle is drawn on frame 3" in capsys.readouterr().err
