"""What the MONAI Label module reads and sends: the /info/ document, infer params, the multipart answer.

The module offers a panel per model ``type``; iMOS is a "segmentation" model (the Auto-segmentation panel's
Run), because that panel maps the answer's ``label_names`` onto segments by name for any number of labels.
Its input is the user's painted slice: the ``label`` file sent with /infer (MONAILabelClient, scripts), or
the label last submitted for the image (the module's "Submit Label" button, PUT /datastore/label).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidInput

MODEL = "imos"
RESULT_EXTENSIONS = (".nrrd", ".nii.gz", ".nii")
# Segments the module adds for its own tools, never objects to propagate
_NOT_OBJECTS = ("background", "background_scribbles", "foreground_scribbles")


def label_names(settings_value: str) -> list[str]:
    """IMOS_MONAI_LABEL_LABELS -> names (empty entries dropped)."""
    return [n.strip() for n in settings_value.split(",") if n.strip()]


def info_document(labels: Sequence[str], model_version: str) -> dict[str, Any]:
    """GET /info/: no top-level ``config`` (the module takes one as an outdated server and stops)."""
    description = ("iMOS mask propagation: paint one slice (any number of segments), then Run; the labels "
                   "are propagated forward and backward through the volume. Paint another slice and Run "
                   "again to correct.")
    return {
        "name": "iMOS Serve",
        "description": description,
        "version": model_version,
        "labels": list(labels),
        "models": {MODEL: {"type": "segmentation", "labels": list(labels), "dimension": 3,
                           "description": description, "version": model_version}},
        "trainers": {}, "strategies": {}, "scoring": {}, "train_stats": {},
        "datastore": {"total": 0, "completed": 0},
    }


@dataclass(frozen=True)
class InferParams:
    """The infer request's params: answer's file type and the label file's value -> segment name table."""

    extension: str
    names: dict[int, str]


def parse_params(raw: str | None) -> dict[str, Any]:
    """The ``params`` form field (a JSON object) -> dict; absent -> {}."""
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidInput("the params field is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("the params field must be a JSON object")
    return value


def infer_params(params: Mapping[str, Any], default_labels: Sequence[str]) -> InferParams:
    ext = str(params.get("result_extension") or ".nii.gz").lower()
    if ext not in RESULT_EXTENSIONS:
        raise InvalidInput(f"result_extension must be one of {', '.join(RESULT_EXTENSIONS)}, got {ext!r}")
    return InferParams(ext, value_names(params.get("label_info"), default_labels))


def value_names(label_info: Any, default_labels: Sequence[str]) -> dict[int, str]:
    """Label value -> segment name: from ``label_info`` ([{"name", "id" | "idx"}], what the module sends with
    a label file), else the /info/ labels by position (value 1 = the first). The module's background and
    scribble segments map to "" (not objects); value 0 is background."""
    names = {i + 1: n for i, n in enumerate(default_labels)}
    if label_info is None:
        return names
    if not isinstance(label_info, list) or not all(isinstance(x, Mapping) for x in label_info):
        raise InvalidInput('label_info must be a list of {"name": ..., "id": ...}')
    out: dict[int, str] = {}
    for item in label_info:
        value = item.get("id", item.get("idx"))
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput('each label_info entry needs a "name" and an integer "id" (or "idx")')
        if value > 0:
            out[value] = "" if name.strip().lower() in _NOT_OBJECTS else name.strip()
    return out


def multipart_answer(params: Mapping[str, Any], filename: str, data: bytes) -> tuple[bytes, str]:
    """(body, content type) of the module's expected answer: a ``params`` JSON field and one file part named by
    its basename (the client writes it under that name in its temp folder). The params part carries no
    content type: the client's parser then gives it back as text, which is what it JSON-decodes."""
    boundary = f"imos-{uuid.uuid4().hex}"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n"
            f"\r\n{json.dumps(params)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n")
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
