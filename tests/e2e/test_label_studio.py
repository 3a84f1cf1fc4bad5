"""Label Studio drives iMOS Serve as its ML backend: a real Label Studio server (label-studio 1.23.2 in
its own venv, started as its docs say) and its SDK, against `imos serve` with the bundled model.

Per project kind (a video with VideoRectangle, a page sequence with BrushLabels) the driver script
connects the backend, asks for an interactive prediction, saves an annotation and runs the batch
"retrieve predictions" action; every mask Label Studio got back, decoded by its own SDK, must equal
`imos segment` on the same frames, annotated frame and mask.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from service.io.medical.video import encode_video, read_video
from tests.e2e.procs import free_port, imos_segment
from tests.medical_builders import dev_sequence

LS_PYTHON = Path(os.environ.get("IMOS_LABEL_STUDIO_VENV", "/var/cache/imos/label-studio-1.23.2")) / "bin" / "python"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
DRIVER = Path(__file__).with_name("label_studio_driver.py")
IMAGES_CONFIG = """<View>
  <Image name="image" valueList="$images"/>
  <BrushLabels name="tag" toName="image">
    <Label value="LV"/><Label value="MYO"/><Label value="RV"/>
  </BrushLabels>
</View>"""
VIDEO_CONFIG = """<View>
  <Labels name="videoLabels" toName="video"><Label value="Polyp"/></Labels>
  <Video name="video" value="$video" framerate="25.0"/>
  <VideoRectangle name="box" toName="video"/>
</View>"""



@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Label Studio server on a free loopback port (about a minute to start); CI must have it installed."""
    if not LS_PYTHON.exists():
        reason = f"Label Studio is not installed at {LS_PYTHON.parent.parent} (scripts/install_label_studio.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    data = tmp_path_factory.mktemp("ls-data")
    port = free_port()
    # A backend on loopback needs both SSRF guards off: the model URL and the webhook LS creates for it.
    env = {**os.environ, "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    log = (data / "ls.log").open("wb")
    cmd = [str(LS_PYTHON.parent / "label-studio"), "start", "-b", "--internal-host", "127.0.0.1", "-p", str(port),
           "--data-dir", str(data), "--username", "admin@example.com", "--password", "imos-test-password",
           "--user-token", TOKEN]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_label_studio(url, proc, data / "ls.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_label_studio(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 240) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"Label Studio exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(f"{url}/api/projects", headers={"Authorization": f"Token {TOKEN}"}, timeout=3)
            if r.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"Label Studio not up after {timeout_s} s:\n{log.read_text()[-3000:]}")


def _drive(ls_url: str, backend: str, job: dict[str, Any], tmp: Path) -> dict[str, Any]:
    job = {**job, "url": ls_url, "token": TOKEN, "backend": f"{backend}/integrations/label-studio",
           "out": str(tmp / "answer.json")}
    (tmp / "job.json").write_text(json.dumps(job))
    done = subprocess.run([str(LS_PYTHON), str(DRIVER), str(tmp / "job.json")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    answer: dict[str, Any] = json.loads((tmp / "answer.json").read_text())
    return answer


def test_brush_page_sequence(label_studio: str, bundled_service: str, tmp_path: Path) -> None:
    frames, masks = dev_sequence("acdc__patient001_ED")
    anchor = int(np.argmax([(m > 0).sum() for m in masks]))
    names = {1: "LV", 2: "MYO", 3: "RV"}
    files = []
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"page{t:03d}.png")
        files.append(str(tmp_path / f"page{t:03d}.png"))
    drawn = [[anchor, names[k], (masks[anchor] == k).astype(np.uint8).tolist()] for k in names]
    answer = _drive(label_studio, bundled_service, {"kind": "images", "config": IMAGES_CONFIG, "files": files,
                                            "drawn_masks": drawn}, tmp_path)
    assert answer["setup_version"].startswith("imos-lite:")
    expected = imos_segment(frames, masks[anchor].astype(np.uint8), anchor, tmp_path / "cli")
    by_name = {v: k for k, v in names.items()}
    for source in ("interactive", "stored"):
        got = [np.zeros_like(expected[0]) for _ in frames]
        for page, label, mask in answer["decoded"][source]:
            got[page][np.asarray(mask, bool)] = by_name[label]
        assert answer["decoded"][source], f"no {source} brush regions: {answer}"
        for t in range(len(frames)):
            np.testing.assert_array_equal(got[t], expected[t], err_msg=f"{source} page {t}")
    stored = answer["stored"][0]
    assert stored["model_version"].startswith("imos-lite:") and "partial" not in stored["model_version"]


def test_video_rectangles(label_studio: str, bundled_service: str, tmp_path: Path) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    video = tmp_path / "polyp.mp4"
    video.write_bytes(encode_video(frames, fps=25.0))
    decoded = [np.asarray(f) for f in read_video(video).frames]  # what any reader of this file gets
    h, w = decoded[0].shape[:2]
    anchor = len(frames) // 2
    ys, xs = np.nonzero(masks[anchor][:h, :w] > 0)
    box = {"x": 100 * xs.min() / w, "y": 100 * ys.min() / h, "width": 100 * (xs.max() + 1 - xs.min()) / w,
           "height": 100 * (ys.max() + 1 - ys.min()) / h}
    drawn = [{"id": "box1", "from_name": "box", "to_name": "video", "type": "videorectangle",
              "value": {"sequence": [{"frame": anchor + 1, "enabled": True, "rotation": 0, **box}],
                        "labels": ["Polyp"], "framesCount": len(decoded)}}]
    answer = _drive(label_studio, bundled_service, {"kind": "video", "config": VIDEO_CONFIG, "files": [str(video)],
                                            "drawn": drawn}, tmp_path)
    given = np.zeros((h, w), np.uint8)
    x0, y0 = round(box["x"] * w / 100), round(box["y"] * h / 100)
    given[y0:round(y0 + box["height"] * h / 100), x0:round(x0 + box["width"] * w / 100)] = 1
    expected = imos_segment(decoded, given, anchor, tmp_path / "cli")
    for source, results in (("interactive", answer["interactive"]["data"]["result"]),
                            ("stored", answer["stored"][0]["result"])):
        (track,) = [r for r in results if r["type"] == "videorectangle"]
        assert track["value"]["labels"] == ["Polyp"] and track["to_name"] == "video"
        keyed = {k["frame"] - 1: k for k in track["value"]["sequence"]}
        for t, mask in enumerate(expected):
            if not mask.any():
                assert t not in keyed, f"{source}: a box on frame {t + 1}, where the object is absent"
                continue
            ys, xs = np.nonzero(mask)
            k = keyed[t]
            assert abs(k["x"] * w / 100 - xs.min()) < 1e-6 and abs(k["y"] * h / 100 - ys.min()) < 1e-6
            assert abs(k["width"] * w / 100 - (xs.max() + 1 - xs.min())) < 1e-6
            assert abs(k["height"] * h / 100 - (ys.max() + 1 - ys.min())) < 1e-6
