"""Frame and mask bytes as kept in the store: zlib-compressed raw uint8, index PNGs for masks."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from service.errors import StateError
from service.io.images import decode_mask, encode_mask_png

_FRAME = struct.Struct("<4sHHH")


def encode_frame(frame: np.ndarray, compress: bool = True) -> bytes:
    """uint8 [H, W] or [H, W, C] -> header + zlib (fast level: frames are written once, read once),
    or header + raw bytes when ``compress`` is off (a store in this process: zlib would only cost the
    cores the engine needs, about 13 ms per 480x480 RGB frame here)."""
    c = 1 if frame.ndim == 2 else frame.shape[2]
    raw = np.ascontiguousarray(frame, np.uint8).tobytes()
    header = _FRAME.pack(b"IMFR" if compress else b"IMRW", frame.shape[0], frame.shape[1], c)
    return header + (zlib.compress(raw, 1) if compress else raw)


def decode_frame(data: bytes) -> np.ndarray:
    magic, h, w, c = _FRAME.unpack_from(data)
    if magic not in (b"IMFR", b"IMRW"):
        raise StateError("stored frame is corrupt")
    body = data[_FRAME.size:]
    arr = np.frombuffer(bytearray(zlib.decompress(body) if magic == b"IMFR" else body), np.uint8)
    if arr.size != h * w * c:
        raise StateError("stored frame is corrupt")
    return arr.reshape((h, w) if c == 1 else (h, w, c))


def encode_labels(labels: np.ndarray) -> bytes:
    """Index mask -> PNG bytes (what REST/gRPC clients receive)."""
    return encode_mask_png(labels)


def decode_labels(data: bytes) -> np.ndarray:
    return decode_mask(data, "stored mask")


def pack_result(run: int, png: bytes) -> bytes:
    return struct.pack("<I", run) + png


def unpack_result(data: bytes) -> tuple[int, bytes]:
    return struct.unpack_from("<I", data)[0], data[4:]
