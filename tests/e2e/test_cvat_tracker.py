"""The CVAT tracking function (deploy/cvat/imos_tracker.py) run by cvat-cli 2.80.0's own agent code.

cvat-cli loads the function file as `cvat-cli function run-agent` does (its FunctionLoader, with -p
parameters), and its tracking driver's worker jobs (init_tracking / track, the calls an agent makes for
CVAT's "init tracking" and "track" requests, preprocess_image included) drive it over a real dev
sequence against `imos serve` with the bundled model. No CVAT server runs here: the frames come from our
own frame source instead of CVAT's media cache. Masks must equal `imos segment --direction forward`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
from cvat_cli._internal import agent_driver, agent_driver_tracking
from cvat_cli._internal.agent_driver_tracking import AgentTrackingFunctionDriver
from cvat_cli._internal.common import FunctionLoader
from cvat_sdk.auto_annotation import TrackableShape
from cvat_sdk.masks import decode_mask, encode_mask

from tests.e2e.procs import ROOT, imos_segment
from tests.medical_builders import dev_sequence

FUNCTION = ROOT / "deploy" / "cvat" / "imos_tracker.py"
TASK = 17


@pytest.fixture(scope="module")
def agent(bundled_service: str) -> str:
    """The tracker loaded into cvat-cli's agent worker, pointed at `imos serve` with the bundled model."""
    function = FunctionLoader(function_module=None, function_file=FUNCTION,
                              function_parameters={"url": bundled_service}).load()
    assert function.spec.supported_shape_types == {"mask", "polygon"}
    agent_driver.set_worker_current_function(function)
    AgentTrackingFunctionDriver.init_worker(lambda: uuid.uuid4().hex)
    return bundled_service


def _images(frames: list[np.ndarray]) -> list[PIL.Image.Image]:
    return [PIL.Image.fromarray(f) for f in frames]


def test_mask_tracking_equals_forward_segmentation(agent: str, tmp_path: Path) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    images = _images(frames)
    w, h = images[0].size
    given = masks[0] == 1
    (state,) = agent_driver_tracking._worker_job_init_tracking(
        TASK, images[0], [TrackableShape(type="mask", points=encode_mask(given))])
    expected = imos_segment(frames, given.astype(np.uint8), 0, tmp_path / "cli", direction="forward")
    for t in range(1, len(frames)):
        (shape,) = agent_driver_tracking._worker_job_track(TASK, images[t], [state])
        if not expected[t].any():
            assert shape is None, f"frame {t}: the object ended, yet a shape came back"
            continue
        assert shape is not None and shape.type == "mask"
        got = decode_mask(shape.points, image_width=w, image_height=h)
        np.testing.assert_array_equal(got, expected[t] == 1, err_msg=f"frame {t}")


def test_polygon_tracking_follows_the_same_masks(agent: str, tmp_path: Path) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    frames = frames[:8]
    images = _images(frames)
    w, h = images[0].size
    ys, xs = np.nonzero(masks[0] == 1)
    polygon = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.min()), float(xs.max()),
               float(ys.max()), float(xs.min()), float(ys.max())]
    drawn = PIL.Image.new("L", (w, h), 0)
    PIL.ImageDraw.Draw(drawn).polygon(list(zip(polygon[::2], polygon[1::2])), fill=1, outline=1)
    (state,) = agent_driver_tracking._worker_job_init_tracking(
        TASK, images[0], [TrackableShape(type="polygon", points=polygon)])
    expected = imos_segment(frames, np.asarray(drawn), 0, tmp_path / "cli", direction="forward")
    for t in range(1, len(frames)):
        (shape,) = agent_driver_tracking._worker_job_track(TASK, images[t], [state])
        assert shape is not None and shape.type == "polygon" and len(shape.points) >= 6
        outline = PIL.Image.new("L", (w, h), 0)
        PIL.ImageDraw.Draw(outline).polygon(list(zip(shape.points[::2], shape.points[1::2])), fill=1, outline=1)
        got, want = np.asarray(outline) != 0, expected[t] == 1
        assert (got & want).sum() / (got | want).sum() > 0.9, f"frame {t}"


def test_a_state_of_another_task_or_size_is_refused(agent: str) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    images = _images(frames[:2])
    (state,) = agent_driver_tracking._worker_job_init_tracking(
        TASK, images[0], [TrackableShape(type="mask", points=encode_mask(masks[0] == 1))])
    with pytest.raises(agent_driver.BadArError, match="not for task"):
        agent_driver_tracking._worker_job_track(TASK + 1, images[1], [state])
    with pytest.raises(agent_driver.BadArError, match="sizes"):
        agent_driver_tracking._worker_job_track(TASK, images[1].resize((64, 48)), [state])
