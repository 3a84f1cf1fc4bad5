"""Open Inference Protocol tensors over REST: JSON data, and Triton's binary tensor data extension.

A request body is a JSON header, optionally followed by raw tensors: its length is then given by the
``Inference-Header-Content-Length`` header, and each input sent raw says its byte size in
``parameters.binary_data_size``, in input order. Outputs go back raw when asked for
(``parameters.binary_data`` per output, or ``binary_data_output`` for all), the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import InvalidInput

DTYPES: dict[str, np.dtype[Any]] = {
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype("<u2"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "UINT32": np.dtype("<u4"), "FP32": np.dtype("<f4"), "BOOL": np.dtype(np.bool_),
}
HEADER = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class InferRequest:
    """inputs: name -> array; outputs: requested output name -> raw (binary) or not; parameters as sent."""

    id: str
    inputs: Mapping[str, np.ndarray]
    parameters: Mapping[str, Any]
    outputs: Mapping[str, bool] = field(default_factory=dict)
    binary_output: bool = False

    def wants_binary(self, name: str) -> bool:
        return self.outputs.get(name, self.binary_output)


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request body (and its Inference-Header-Content-Length) -> inputs as arrays."""
    size = _header_size(header_length, len(body))
    try:
        doc = json.loads(body[:size])
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the inference request's header is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise InvalidInput("the inference request needs an 'inputs' list")
    raw, offset, inputs = body[size:], 0, {}
    for item in doc["inputs"]:
        name, array, used = _input(item, raw, offset)
        inputs[name] = array
        offset += used
    if offset != len(raw):
        raise InvalidInput(f"{len(raw) - offset} bytes of binary data follow the inputs that no input claims")
    params = doc.get("parameters") or {}
    wanted = doc.get("outputs") or []
    if not isinstance(params, dict) or not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise InvalidInput("the request's parameters must be an object and its outputs a list of objects")
    outputs = {str(o.get("name")): bool((o.get("parameters") or {}).get("binary_data", False)) for o in wanted}
    return InferRequest(str(doc.get("id", "")), inputs, params, outputs, bool(params.get("binary_data_output")))


def _header_size(value: str | None, total: int) -> int:
    if value is None:
        return total
    try:
        size = int(value)
    except ValueError:
        raise InvalidInput(f"{HEADER} must be a byte count, got {value!r}") from None
    if not 0 < size <= total:
        raise InvalidInput(f"{HEADER} {size} does not fit a body of {total} bytes")
    return size


def _input(item: Any, raw: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    """(name, array, raw bytes used) of one input."""
    if not isinstance(item, dict) or not isinstance(item.get("parameters") or {}, dict):
        raise InvalidInput("each input must be an object with a name, a datatype and a shape")
    try:
        name, datatype, shape = str(item["name"]), str(item["datatype"]), [int(d) for d in item["shape"]]
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("each input needs a name, a datatype and a shape") from None
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input {name}: datatype {datatype} is not one of {', '.join(DTYPES)}")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name}: shape {shape} has a negative dimension")
    count = int(np.prod(shape)) if shape else 1
    nbytes = (item.get("parameters") or {}).get("binary_data_size")
    if nbytes is not None:
        if int(nbytes) != count * dtype.itemsize or offset + int(nbytes) > len(raw):
            raise InvalidInput(f"input {name}: binary_data_size {nbytes} does not hold {shape} {datatype} "
                               "values in the body")
        data = np.frombuffer(raw, dtype, count, offset).reshape(shape)
        return name, data, int(nbytes)
    try:
        data = np.asarray(item.get("data"), dtype=dtype).reshape(shape)
    except (TypeError, ValueError):
        raise InvalidInput(f"input {name}: its data do not fill the shape {shape} as {datatype}") from None
    return name, data, 0


def response(model: str, version: str, request_id: str, outputs: Sequence[tuple[str, str, np.ndarray]],
             request: InferRequest) -> tuple[bytes, int | None]:
    """(body, JSON header length or None): outputs are (name, datatype, array), raw where the request asked."""
    items, blobs = [], []
    for name, datatype, array in outputs:
        if request.outputs and name not in request.outputs:
            continue
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.wants_binary(name):
            blob = np.ascontiguousarray(array, DTYPES[datatype]).tobytes()
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = array.astype(DTYPES[datatype]).ravel().tolist()
        items.append(item)
    head = json.dumps({"model_name": model, "model_version": version, "id": request_id, "outputs": items}).encode()
    return (head + b"".join(blobs), len(head)) if blobs else (head, None)
