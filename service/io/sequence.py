"""Uploaded sequences and masks as bytes: zip of frames, .npy, or a single image (auto-detected)."""

from __future__ import annotations

import io
import zipfile

import numpy as np

from service.errors import InvalidFrames, InvalidMask, TooLarge
from service.io.images import IMAGE_SUFFIXES, decode_image, decode_mask
from service.io.safezip import ZIP_ERRORS

_ZIP, _NPY = b"PK\x03\x04", b"\x93NUMPY"


def decode_sequence(data: bytes, name: str = "sequence", max_bytes: int = 1 << 30,
                    max_frames: int = 100_000) -> list[np.ndarray]:
    """Bytes of a zip of PNG/JPEG frames (name order), a .npy (T x H x W[x3]) or one image."""
    if not data:
        raise InvalidFrames(f"{name} is empty")
    if data.startswith(_ZIP):
        return _from_zip(data, name, max_bytes, max_frames)
    if data.startswith(_NPY):
        arr = _npy(data, name, InvalidFrames)
        if arr.ndim not in (3, 4):
            raise InvalidFrames(f"{name} has shape {arr.shape}; expected T x H x W or T x H x W x 3")
        return list(arr)
    return [decode_image(data, name)]


def _from_zip(data: bytes, name: str, max_bytes: int, max_frames: int) -> list[np.ndarray]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = sorted((i for i in archive.infolist() if not i.is_dir() and _is_image(i.filename)),
                       key=lambda i: i.filename)
    except ZIP_ERRORS as exc:
        raise InvalidFrames(f"{name} is not a readable zip: {exc}") from None
    if not infos:
        raise InvalidFrames(f"{name} holds no PNG/JPEG frames")
    if len(infos) > max_frames:
        raise TooLarge(f"{name} holds {len(infos)} frames; the limit is {max_frames}")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:  # checked from the directory, before anything is decompressed
        raise TooLarge(f"{name} unpacks to {total} bytes; the limit is {max_bytes}")
    frames = []
    for info in infos:
        try:
            raw = archive.read(info)
        except ZIP_ERRORS as exc:
            raise InvalidFrames(f"{name}: cannot read {info.filename}: {exc}") from None
        frames.append(decode_image(raw, info.filename))
    return frames


def _is_image(filename: str) -> bool:
    base = filename.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


def decode_mask_upload(data: bytes, name: str = "mask") -> np.ndarray:
    """An index PNG or a .npy of integer labels [H, W]."""
    if not data:
        raise InvalidMask(f"{name} is empty")
    if data.startswith(_NPY):
        return _npy(data, name, InvalidMask)
    return decode_mask(data, name)


def _npy(data: bytes, name: str, error: type[Exception]) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise error(f"{name} is not a readable .npy array: {exc}") from None


def encode_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def encode_png_zip(pngs: list[bytes]) -> bytes:
    """00000.png ... in a zip (stored: PNGs are already compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, png in enumerate(pngs):
            zf.writestr(f"{i:05d}.png", png)
    return buf.getvalue()
