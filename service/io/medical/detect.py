"""Recognise an upload's format from its bytes (file name only as a tie-breaker) and read it.

Volumes: DICOM (one instance, a zip, a folder, or several instances), NIfTI (.nii / .nii.gz), NRRD (.nrrd,
data attached; read through the NIfTI path, so its results go back as NIfTI or NRRD on its grid), video
(mp4 / avi / mov / mkv), and the plain formats of :mod:`service.io.sequence` (zip of PNG/JPEG, .npy, one
image). Annotations: index PNG, .npy, NIfTI labelmap with one labelled slice, DICOM SEG of one slice.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from service.errors import InvalidFrames, InvalidInput, InvalidMask
from service.io.images import IMAGE_SUFFIXES, read_frames
from service.io.medical.dicom_files import looks_like_dicom
from service.io.medical.dicom_series import read_dicom_series
from service.io.medical.intensity import IntensityOptions
from service.io.medical.nifti import (
    GZIP_MAGIC,
    array3d,
    load_image,
    looks_like_nifti,
    read_labelmap_annotation,
    read_nifti,
    volume_from_image,
)
from service.io.medical.nrrd import looks_like_nrrd, read_nrrd_image
from service.io.medical.seg_annotation import is_seg, read_seg_annotation
from service.io.medical.video import looks_like_video, read_video
from service.io.medical.volume import DEFAULT_LIMITS, Annotation, ReadLimits, Volume
from service.io.safezip import ZIP_ERRORS
from service.io.sequence import decode_mask_upload, decode_sequence

VolumeFormat = Literal["dicom", "nifti", "nrrd", "video", "images"]
AnnotationFormat = Literal["png", "npy", "nifti", "seg"]
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")
_NPY = b"\x93NUMPY"
_SUFFIXES: dict[str, VolumeFormat] = {".dcm": "dicom", ".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd",
                                      ".mp4": "video", ".avi": "video", ".mov": "video", ".mkv": "video"}


@dataclass(frozen=True)
class ReadOptions:
    """How to read a volume: intensity mapping, NIfTI slice axis (None: closest to axial), size limits."""

    intensity: IntensityOptions = field(default_factory=IntensityOptions)
    axis: int | None = None
    limits: ReadLimits = field(default_factory=ReadLimits)


DEFAULT_READ = ReadOptions()


def _gunzip_head(data: bytes, size: int = 600) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, size)
    except zlib.error:
        return b""


def _is_nifti(data: bytes) -> bool:
    """NIfTI-1/2 bytes, plain or gzip (the magic read from the unpacked head)."""
    return looks_like_nifti(data) or (data.startswith(GZIP_MAGIC) and looks_like_nifti(_gunzip_head(data)))


def _zip_kind(data: bytes) -> VolumeFormat:
    """A zip holding DICOM files is "dicom"; one holding PNG/JPEG frames is "images"."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir() and not i.filename.rsplit("/", 1)[-1].startswith(".")]
        for info in infos[:20]:  # the first members decide; a DICOM export has no stray images among them
            with archive.open(info) as member:
                if looks_like_dicom(member.read(132)):
                    return "dicom"
    except ZIP_ERRORS as exc:
        raise InvalidFrames(f"the zip is not readable ({type(exc).__name__})") from None
    if any(i.filename.lower().endswith(IMAGE_SUFFIXES) for i in infos):
        return "images"
    raise InvalidFrames("the zip holds neither DICOM files nor PNG/JPEG frames")


def detect_format(data: bytes, filename: str | None = None) -> VolumeFormat:
    """The volume format of ``data``; raises InvalidFrames when nothing matches."""
    if not data:
        raise InvalidFrames("the upload is empty")
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    if looks_like_dicom(data):
        return "dicom"
    if _is_nifti(data):
        return "nifti"
    if looks_like_nrrd(data):
        return "nrrd"
    if looks_like_video(data):
        return "video"
    if data.startswith(_NPY) or data.startswith(_IMAGE_MAGIC):
        return "images"
    name = (filename or "").lower()
    for suffix, kind in _SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    raise InvalidFrames("unrecognised format: send DICOM, NIfTI, NRRD, a video (mp4/avi/mov), a zip of PNG/JPEG "
                        "frames, a .npy or an image")


def load_volume(source: bytes | Sequence[bytes] | Path, filename: str | None = None,
                fmt: VolumeFormat | None = None, options: ReadOptions = DEFAULT_READ) -> Volume:
    """Read a volume from bytes, several uploaded parts (DICOM instances) or a path (file or folder)."""
    if isinstance(source, Path):
        return _load_path(source, fmt, options)
    if not isinstance(source, (bytes, bytearray, memoryview)):
        parts = [bytes(p) for p in source]
        if len(parts) != 1:
            if fmt not in (None, "dicom"):
                raise InvalidInput(f"several parts can only be DICOM instances, not {fmt}")
            return read_dicom_series(parts, options.intensity, options.limits)
        source = parts[0]
    data = bytes(source)
    kind = fmt or detect_format(data, filename)
    if kind == "dicom":
        return read_dicom_series(data, options.intensity, options.limits)
    if kind == "nifti":
        return read_nifti(data, options.axis, options.intensity, options.limits)
    if kind == "nrrd":
        img = read_nrrd_image(data, options.limits, InvalidFrames)
        return volume_from_image(img, options.axis, options.intensity, options.limits)
    if kind == "video":
        return read_video(data, options.limits)
    if kind == "images":
        frames = decode_sequence(data, filename or "sequence", options.limits.max_bytes, options.limits.max_frames)
        return Volume(frames=frames, kind="images")
    raise InvalidInput(f"unknown format {kind!r}; use dicom, nifti, nrrd, video or images")


def load_label_values(data: bytes, limits: ReadLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A label volume (NIfTI or NRRD) -> its voxel array [X, Y, Z] on the file's own grid."""
    if looks_like_nrrd(data):
        img = read_nrrd_image(data, limits, InvalidMask)
    elif _is_nifti(data):
        img = load_image(data, limits, InvalidMask)
    else:
        raise InvalidMask("the label volume is neither NIfTI (.nii / .nii.gz) nor NRRD (.nrrd)")
    return np.asarray(array3d(img, InvalidMask))


def _load_path(path: Path, fmt: VolumeFormat | None, options: ReadOptions) -> Volume:
    if path.is_dir():
        has_dicom = fmt == "dicom" or any(_head_is_dicom(p) for p in sorted(path.rglob("*"))[:50])
        if has_dicom:
            return read_dicom_series(path, options.intensity, options.limits)
        return Volume(frames=read_frames(path), kind="images")
    if not path.is_file():
        raise InvalidFrames("the input path does not exist")
    return load_volume(path.read_bytes(), path.name, fmt, options)


def _head_is_dicom(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return looks_like_dicom(f.read(132))


def detect_annotation(data: bytes, filename: str | None = None) -> AnnotationFormat:
    """The annotation format of ``data``; raises InvalidMask when nothing matches."""
    if not data:
        raise InvalidMask("the mask upload is empty")
    if looks_like_dicom(data):
        return "seg"
    if _is_nifti(data):
        return "nifti"
    if data.startswith(_NPY):
        return "npy"
    if data.startswith(_IMAGE_MAGIC) or (filename or "").lower().endswith(IMAGE_SUFFIXES):
        return "png"
    raise InvalidMask("unrecognised mask format: send an index PNG, a .npy, a NIfTI labelmap or a DICOM SEG")


def load_annotation(data: bytes, volume: Volume | None = None, filename: str | None = None,
                    fmt: AnnotationFormat | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> Annotation:
    """Read an annotation; ``frame`` is set when the format itself says which frame it annotates."""
    kind = fmt or detect_annotation(data, filename)
    if kind == "seg":
        if not is_seg(data):
            raise InvalidMask("the DICOM annotation is not a Segmentation object")
        if volume is None:
            raise InvalidMask("a DICOM SEG annotation needs the DICOM series it refers to")
        annotation = read_seg_annotation(data, volume)
    elif kind == "nifti":
        annotation = read_labelmap_annotation(data, volume, None, limits)
    elif kind in ("png", "npy"):
        annotation = _plain_annotation(decode_mask_upload(data, filename or "mask"))
    else:
        raise InvalidInput(f"unknown mask format {kind!r}; use png, npy, nifti or seg")
    if volume is not None:
        check_annotation(annotation, volume)
    return annotation


def _plain_annotation(mask: np.ndarray) -> Annotation:
    """[H, W] -> no frame stated; [T, H, W] with exactly one labelled frame -> that frame."""
    if mask.ndim == 2:
        return Annotation(mask=mask.astype(np.int64), frame=None)
    if mask.ndim == 3:
        labelled = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        if labelled.size != 1:
            raise InvalidMask(f"a T x H x W mask must label exactly one frame; it labels {labelled.size}")
        return Annotation(mask=mask[int(labelled[0])].astype(np.int64), frame=int(labelled[0]))
    raise InvalidMask(f"a mask must be H x W (or T x H x W with one labelled frame), not {mask.shape}")


def check_annotation(annotation: Annotation, volume: Volume) -> None:
    """Refuse a mask that matches no frame of ``volume`` (wrong size or frame out of range)."""
    if annotation.mask.shape != volume.shape:
        raise InvalidMask(f"the mask is {annotation.mask.shape[0]}x{annotation.mask.shape[1]}; the frames are "
                          f"{volume.shape[0]}x{volume.shape[1]}: it matches no frame")
    if annotation.frame is not None and not 0 <= annotation.frame < len(volume):
        raise InvalidMask(f"the mask is for frame {annotation.frame}; the volume has {len(volume)} frames")

