"""Encoding a sequence's results in the format a caller asked for (CLI and REST share this)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInput
from service.io.medical.volume import Volume
from service.io.sequence import encode_npy, encode_png_zip
from service.sessions.codec import encode_labels

FORMATS = ("png-zip", "npy", "seg", "nifti", "nrrd", "rle")


@dataclass(frozen=True)
class Encoded:
    data: bytes
    media_type: str
    suffix: str


def compact_labels(stack: np.ndarray) -> np.ndarray:
    """Index masks [T, H, W] in the smallest unsigned type holding their labels: uint8 up to 255
    (a 100-frame 480x480 result is 23 MB, not the 184 MB of int64), else uint16."""
    if stack.size and (stack.min() < 0 or stack.max() > 65535):
        raise InvalidInput("label values must lie in 0..65535")
    return stack.astype(np.uint8 if not stack.size or stack.max() < 256 else np.uint16, copy=False)


def encode_results(fmt: str, labels: Sequence[np.ndarray], volume: Volume | None = None,
                   names: Mapping[int, str] | None = None, model: str = "imos:1",
                   seg_type: str = "binary") -> Encoded:
    """labels: one index mask [H, W] per frame -> bytes in format fmt.

    seg needs a DICOM volume (its source instances), nifti and nrrd a NIfTI or NRRD one (its grid and
    affine); seg_type: binary
    (classic Segmentation Storage, the default) or labelmap.
    """
    if fmt == "png-zip":
        return Encoded(encode_png_zip([encode_labels(m) for m in labels]), "application/zip", ".zip")
    if fmt == "npy":
        return Encoded(encode_npy(compact_labels(np.stack(labels))), "application/octet-stream", ".npy")
    if fmt == "rle":
        from service.io.medical.rle import coco_json

        return Encoded(coco_json(list(labels), names), "application/json", ".json")
    if fmt == "seg":
        if volume is None or volume.dicom is None:
            raise InvalidInput("DICOM SEG output needs a DICOM input series; use png-zip, npy, nifti or rle")
        from service.io.medical.seg import write_seg

        name, _, version = model.partition(":")
        seg = write_seg(volume, list(labels), name, version or "1", names, segmentation_type=seg_type)
        return Encoded(seg.data, "application/dicom", ".dcm")
    if fmt == "nifti":
        if volume is None or volume.nifti is None:
            raise InvalidInput("NIfTI output needs a NIfTI or NRRD input (its affine); use seg, png-zip, npy or rle")
        from service.io.medical.nifti import write_labelmap

        return Encoded(write_labelmap(volume, list(labels)), "application/gzip", ".nii.gz")
    if fmt == "nrrd":
        if volume is None or volume.nifti is None:
            raise InvalidInput("NRRD output needs a NIfTI or NRRD input (its grid); use seg, png-zip, npy or rle")
        from service.io.medical.nifti import labelmap_voxels
        from service.io.medical.nrrd import encode_label_nrrd

        voxels = labelmap_voxels(volume.nifti, list(labels))
        return Encoded(encode_label_nrrd(voxels, volume.nifti.affine), "application/octet-stream", ".nrrd")
    raise InvalidInput(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")


def parse_names(text: str | None) -> dict[int, str]:
    """'1=Liver,2=Tumour' -> {1: 'Liver', 2: 'Tumour'}."""
    out: dict[int, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip().isdigit():
            raise InvalidInput(f"object names look like 1=Liver,2=Tumour; got {part!r}")
        out[int(key)] = value.strip()
    return out
