"""The gateway's per-frame conversions for gRPC: labels present in a stored result mask."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from service.gateway.grpc_convert import object_ids
from service.sessions.codec import encode_labels


def test_object_ids_lists_labels_present_without_background() -> None:
    labels = np.zeros((40, 50), np.uint8)
    labels[1:5, 1:5], labels[30, 49], labels[10:20, 10:12] = 7, 255, 3
    assert object_ids(encode_labels(labels)) == [3, 7, 255]


def test_object_ids_of_an_empty_mask_is_empty() -> None:
    assert object_ids(encode_labels(np.zeros((8, 8), np.uint8))) == []


def test_object_ids_of_a_16_bit_grey_png() -> None:
    labels = np.zeros((6, 6), np.uint16)
    labels[0, 0], labels[5, 5] = 300, 2
    buf = io.BytesIO()
    Image.fromarray(labels).save(buf, format="PNG")
    assert object_ids(buf.getvalue()) == [2, 300]
