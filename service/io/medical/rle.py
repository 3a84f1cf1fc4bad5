"""COCO run-length encoding (uncompressed counts, column-major as COCO) for per-frame, per-object masks.

The document is a COCO instances JSON (images = frames, categories = objects, one annotation per frame
and object with ``iscrowd`` 1 as COCO requires for RLE), which CVAT and Label Studio import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.errors import InvalidMask
from service.io.medical.volume import object_names


def encode_rle(binary: np.ndarray) -> dict[str, Any]:
    """Mask [H, W] (truthy = inside) -> {"size": [H, W], "counts": [...]} in column-major order.

    Counts alternate background/foreground runs and always start with a background run (maybe 0).
    """
    h, w = binary.shape
    flat = np.asarray(binary, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return {"size": [h, w], "counts": []}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size])))
    counts = ([0] if flat[0] else []) + [int(r) for r in runs]
    return {"size": [int(h), int(w)], "counts": counts}


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """{"size": [H, W], "counts": [...]} -> bool [H, W]; raises InvalidMask when counts do not fill the size."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = np.asarray(rle["counts"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise InvalidMask("an RLE needs 'size' [H, W] and integer 'counts' (compressed strings are not read)") \
            from None
    if counts.ndim != 1 or (counts < 0).any() or int(counts.sum()) != h * w:
        raise InvalidMask(f"RLE counts do not add up to {h}x{w} pixels")
    values = np.arange(counts.size) % 2 == 1  # odd runs are foreground
    return np.repeat(values, counts).reshape((w, h)).T


def _bbox(binary: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(binary.any(axis=1)), np.flatnonzero(binary.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def coco_document(labels: Sequence[np.ndarray], names: Sequence[str] | Mapping[int, str] | None = None,
                  file_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-frame labels [H, W] -> a COCO instances dict (empty objects of a frame are left out)."""
    if not labels:
        raise InvalidMask("no label frames to encode")
    ids = sorted(int(v) for v in np.unique(np.stack(labels)) if v != 0)
    named = object_names(ids, names)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for t, lab in enumerate(labels):
        h, w = lab.shape
        name = file_names[t] if file_names is not None else f"{t:05d}.png"
        images.append({"id": t + 1, "file_name": name, "width": int(w), "height": int(h), "frame_index": t})
        for obj in ids:
            binary = lab == obj
            area = int(binary.sum())
            if area == 0:
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": t + 1, "category_id": obj,
                                "segmentation": encode_rle(binary), "area": float(area), "bbox": _bbox(binary),
                                "iscrowd": 1})
    categories = [{"id": i, "name": named[i], "supercategory": "object"} for i in ids]
    return {"info": {"description": "iMOS Serve mask propagation"}, "images": images,
            "categories": categories, "annotations": annotations}


def coco_json(labels: Sequence[np.ndarray], names: Sequence[str] | Mapping[int, str] | None = None,
              file_names: Sequence[str] | None = None) -> bytes:
    """:func:`coco_document` as compact UTF-8 JSON bytes."""
    return json.dumps(coco_document(labels, names, file_names), separators=(",", ":")).encode()


def labels_from_coco(doc: Mapping[str, Any] | bytes) -> list[np.ndarray]:
    """A COCO instances document (dict or JSON bytes) -> per-image labels [H, W] int64, images in id order."""
    if isinstance(doc, (bytes, bytearray)):
        try:
            doc = json.loads(doc)
        except ValueError:
            raise InvalidMask("the COCO document is not valid JSON") from None
    assert isinstance(doc, Mapping)
    images = sorted(doc.get("images", []), key=lambda im: im["id"])
    labels = {im["id"]: np.zeros((int(im["height"]), int(im["width"])), dtype=np.int64) for im in images}
    for ann in doc.get("annotations", []):
        target = labels.get(ann.get("image_id"))
        if target is None:
            raise InvalidMask("a COCO annotation refers to an image that is not in the document")
        binary = decode_rle(ann["segmentation"])
        if binary.shape != target.shape:
            raise InvalidMask("a COCO RLE's size does not match its image")
        target[binary] = int(ann["category_id"])
    return [labels[im["id"]] for im in images]
