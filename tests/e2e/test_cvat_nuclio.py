"""The CVAT (community) tracker Nuclio function (deploy/cvat/nuclio) run by nuclio-sdk's test platform with
CVAT's tracker payloads, old form (rectangles as [x1, y1, x2, y2]) and new form ({"type", "points"}),
against `imos serve` with the bundled model; its answers must follow `imos segment --direction forward`."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from cvat_sdk.masks import decode_mask, encode_mask
from nuclio_sdk import Event
from nuclio_sdk.test import Platform
from PIL import Image

from tests.e2e.procs import ROOT, imos_segment
from tests.medical_builders import dev_sequence

FUNCTION_DIR = ROOT / "deploy" / "cvat" / "nuclio"


@pytest.fixture(scope="module")
def function(bundled_service: str, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The function's handler module, as Nuclio loads it, pointed at `imos serve` with the bundled model."""
    monkeypatch_module.setenv("IMOS_URL", bundled_service)
    monkeypatch_module.syspath_prepend(str(FUNCTION_DIR))
    spec = importlib.util.spec_from_file_location("imos_nuclio_main", FUNCTION_DIR / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Nuclio's platform finds init_context through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _b64(frame: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _call(platform: Platform, function: ModuleType, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = platform.call_handler(function.handler, Event(body=body))
    return resp.status_code, json.loads(resp.body)


def test_old_form_rectangles_follow_the_propagated_mask(function: ModuleType, tmp_path: Path) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    frames = frames[:10]
    ys, xs = np.nonzero(masks[0] == 1)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    given = np.zeros(frames[0].shape[:2], np.uint8)
    given[int(box[1]):int(box[3]), int(box[0]):int(box[2])] = 1
    expected = imos_segment(frames, given, 0, tmp_path / "cli", direction="forward")
    platform = Platform()
    code, out = _call(platform, function, {"image": _b64(frames[0]), "shapes": [box], "states": [None]})
    assert code == 200 and out["shapes"] == [box] and out["states"][0]["next_frame"] == 1
    states = out["states"]
    for t in range(1, len(frames)):
        code, out = _call(platform, function, {"image": _b64(frames[t]), "shapes": [box], "states": states})
        assert code == 200
        states = out["states"]
        ys, xs = np.nonzero(expected[t])
        want = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs) else None
        assert out["shapes"] == [want], f"frame {t}"


def test_new_form_masks_round_trip_cvat_encoding(function: ModuleType, tmp_path: Path) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    frames = frames[:6]
    h, w = frames[0].shape[:2]
    given = masks[0] == 1
    shape = {"type": "mask", "points": encode_mask(given)}
    expected = imos_segment(frames, given.astype(np.uint8), 0, tmp_path / "cli", direction="forward")
    platform = Platform()
    code, out = _call(platform, function, {"image": _b64(frames[0]), "shapes": [shape], "states": []})
    assert code == 200
    states = out["states"]
    for t in range(1, len(frames)):
        code, out = _call(platform, function, {"image": _b64(frames[t]), "shapes": [shape], "states": states})
        assert code == 200 and out["shapes"][0]["type"] == "mask"
        states = out["states"]
        got = decode_mask(out["shapes"][0]["points"], image_width=w, image_height=h)
        np.testing.assert_array_equal(got, expected[t] == 1, err_msg=f"frame {t}")


def test_bad_payloads_and_lost_sessions_are_named(function: ModuleType) -> None:
    frames, _ = dev_sequence("cvc__fine_3")
    platform = Platform()
    code, out = _call(platform, function, {"image": 5, "shapes": [[0, 0, 4, 4]]})
    assert code == 400 and "base64" in out["error"]
    code, out = _call(platform, function, {"image": _b64(frames[0]), "shapes": [{"type": "ellipse", "points": []}]})
    assert code == 400 and "ellipse" in out["error"]
    lost = {"session": "0" * 32, "next_frame": 3}
    code, out = _call(platform, function, {"image": _b64(frames[1]), "shapes": [[0, 0, 4, 4]], "states": [lost]})
    assert code == 502 and "HTTP 404" in out["error"]
