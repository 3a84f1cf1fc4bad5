"""The Open Inference Protocol over REST, driven by Triton's own client (tritonclient.http 2.73.0) against
`imos serve` with the bundled model: health and metadata, one-shot inference with binary tensors (the
client's default) and with JSON tensors, and a sequence one frame per request. Masks equal `imos segment`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.procs import imos_segment
from tests.medical_builders import dev_sequence

MODEL = "imos-lite"


@pytest.fixture()
def client(bundled_service: str) -> httpclient.InferenceServerClient:
    c = httpclient.InferenceServerClient(bundled_service.removeprefix("http://"), network_timeout=300,
                                         connection_timeout=30)
    yield c
    c.close()


def _inputs(frames: np.ndarray, mask: np.ndarray | None, binary: bool) -> list[httpclient.InferInput]:
    out = [httpclient.InferInput("FRAMES", list(frames.shape), "UINT8")]
    out[0].set_data_from_numpy(frames, binary_data=binary)
    if mask is not None:
        out.append(httpclient.InferInput("MASK", list(mask.shape), "UINT8"))
        out[1].set_data_from_numpy(mask, binary_data=binary)
    return out


def test_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    meta = client.get_server_metadata()
    assert meta["name"] == "imos-serve" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata(MODEL)
    assert [i["name"] for i in model["inputs"]] == ["FRAMES", "MASK"] and model["outputs"][0]["name"] == "MASKS"
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_model_metadata("no-such-model")


@pytest.mark.parametrize("binary", [True, False])
def test_one_shot_inference_equals_segment(client: httpclient.InferenceServerClient, binary: bool,
                                           tmp_path: Path) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    frames, k = np.stack(frames[:8]), 3
    mask = masks[k].astype(np.uint8)
    outputs = [httpclient.InferRequestedOutput("MASKS", binary_data=binary)]
    result = client.infer(MODEL, _inputs(frames, mask, binary), outputs=None if binary else outputs,
                          parameters={"frame": k, "direction": "both"})
    got = result.as_numpy("MASKS")
    expected = imos_segment(list(frames), mask, k, tmp_path / "cli")
    assert got.shape == frames.shape and got.dtype == np.uint8
    for t in range(len(frames)):
        np.testing.assert_array_equal(got[t], expected[t], err_msg=f"frame {t}")


def test_a_sequence_one_frame_per_request_equals_forward_segment(client: httpclient.InferenceServerClient,
                                                                 tmp_path: Path) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    frames = frames[:6]
    mask = masks[0].astype(np.uint8)
    expected = imos_segment(frames, mask, 0, tmp_path / "cli", direction="forward")
    for t, frame in enumerate(frames):
        result = client.infer(MODEL, _inputs(frame[None], mask if t == 0 else None, True), sequence_id=42,
                              sequence_start=t == 0, sequence_end=t == len(frames) - 1)
        np.testing.assert_array_equal(result.as_numpy("MASKS")[0], expected[t], err_msg=f"frame {t}")
    with pytest.raises(InferenceServerException, match="sequence 42 was not started"):
        client.infer(MODEL, _inputs(frames[0][None], None, True), sequence_id=42)


def test_bad_requests_are_named(client: httpclient.InferenceServerClient) -> None:
    frames = np.zeros((2, 16, 16), np.uint8)
    with pytest.raises(InferenceServerException, match="MASK"):
        client.infer(MODEL, _inputs(frames, None, True))
    with pytest.raises(InferenceServerException, match="outside the sequence"):
        client.infer(MODEL, _inputs(frames, np.ones((16, 16), np.uint8), True), parameters={"frame": 5})
    wrong = httpclient.InferInput("FRAMES", [2, 16, 16], "FP32")
    wrong.set_data_from_numpy(frames.astype(np.float32))
    with pytest.raises(InferenceServerException, match="FRAMES must be UINT8"):
        client.infer(MODEL, [wrong])
