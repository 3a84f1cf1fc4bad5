"""Open Inference Protocol tensors: JSON and binary inputs in, JSON and binary outputs out, bad bodies named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.errors import InvalidInput
from service.integrations.kserve.tensors import InferRequest, parse_request, response


def _binary(header: dict, *blobs: bytes) -> tuple[bytes, str]:  # type: ignore[type-arg]
    head = json.dumps(header).encode()
    return head + b"".join(blobs), str(len(head))


def test_json_and_binary_inputs_parse_to_the_same_arrays() -> None:
    frames = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    mask = np.array([[0, 1], [2, 3]], np.int32)
    as_json = {"id": "a", "inputs": [
        {"name": "FRAMES", "datatype": "UINT8", "shape": [2, 3, 4], "data": frames.ravel().tolist()},
        {"name": "MASK", "datatype": "INT32", "shape": [2, 2], "data": [[0, 1], [2, 3]]}]}
    req = parse_request(json.dumps(as_json).encode(), None)
    body, size = _binary({"inputs": [
        {"name": "FRAMES", "datatype": "UINT8", "shape": [2, 3, 4], "parameters": {"binary_data_size": 24}},
        {"name": "MASK", "datatype": "INT32", "shape": [2, 2], "parameters": {"binary_data_size": 16}}],
        "parameters": {"binary_data_output": True}}, frames.tobytes(), mask.astype("<i4").tobytes())
    raw = parse_request(body, size)
    for r in (req, raw):
        np.testing.assert_array_equal(r.inputs["FRAMES"], frames)
        np.testing.assert_array_equal(r.inputs["MASK"], mask)
    assert req.id == "a" and not req.wants_binary("MASKS") and raw.wants_binary("MASKS")


@pytest.mark.parametrize("body, header, message", [
    (b"not json", None, "not JSON"),
    (b'{"inputs": 3}', None, "'inputs' list"),
    (b'{"inputs": [{"name": "X", "datatype": "STRING", "shape": [1], "data": ["a"]}]}', None, "datatype STRING"),
    (b'{"inputs": [{"name": "X", "datatype": "UINT8", "shape": [2, 2], "data": [1, 2, 3]}]}', None,
     "do not fill the shape"),
    (b'{"inputs": [{"name": "X", "datatype": "UINT8", "shape": [4], '
     b'"parameters": {"binary_data_size": 4}}]}\x01\x02', "101", "does not hold"),
    (b'{"inputs": []}\x00\x00', "14", "2 bytes of binary data"),
    (b'{"inputs": []}', "99", "does not fit"),
    (b'{"inputs": []}', "x", "byte count"),
])
def test_bad_bodies_are_named(body: bytes, header: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_request(body, header)


def test_outputs_go_back_as_asked() -> None:
    masks = np.array([[[0, 1], [1, 0]]], np.uint8)
    req = InferRequest("r", {}, {}, {"MASKS": True})
    body, size = response("m", "2", "r", [("MASKS", "UINT8", masks)], req)
    assert size is not None and body[size:] == masks.tobytes()
    head = json.loads(body[:size])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 4 and head["model_version"] == "2"
    body, size = response("m", "2", "r", [("MASKS", "UINT8", masks)], InferRequest("r", {}, {}))
    assert size is None and json.loads(body)["outputs"][0]["data"] == [0, 1, 1, 0]
    body, _ = response("m", "2", "r", [("MASKS", "UINT8", masks)], InferRequest("r", {}, {}, {"OTHER": False}))
    assert json.loads(body)["outputs"] == []
