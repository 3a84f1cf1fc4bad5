"""Property tests: random bytes never crash a decoder (only domain errors), and bombs are refused early."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.engine import state_codec
from service.errors import ImosError, TooLarge
from service.io.images import decode_image, decode_mask
from service.io.medical.detect import load_annotation, load_volume
from service.io.medical.volume import ReadLimits
from service.io.sequence import decode_mask_upload, decode_sequence

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"PK\x03\x04", b"\x93NUMPY", b"\xff\xd8\xff", b"\x1f\x8b",
            b"\x00" * 128 + b"DICM", b"IMOSSTAT", b"\x00\x00\x01\x5c"]


def _must_be_domain_error(fn, data: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(data)
    except ImosError:
        pass  # a clear error is the right answer to garbage


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=2048))
def test_random_bytes_never_crash(prefix: bytes, body: bytes) -> None:
    data = prefix + body
    for fn in (lambda d: decode_image(d, "x"), lambda d: decode_mask(d, "x"), lambda d: decode_sequence(d, "x"),
               lambda d: decode_mask_upload(d, "x"), lambda d: load_volume(d, "x.bin"),
               lambda d: load_annotation(d, None, "x.bin"), state_codec.decode):
        _must_be_domain_error(fn, data)


@FUZZ
@given(mutation=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_valid_files_never_crash(mutation: list[tuple[int, int]]) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(buf, format="PNG")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("0.png", buf.getvalue())
    for original in (buf.getvalue(), zbuf.getvalue()):
        data = bytearray(original)
        for pos, value in mutation:
            data[pos % len(data)] = value
        for fn in (lambda d: decode_sequence(d, "x"), lambda d: decode_mask_upload(d, "x"),
                   lambda d: load_volume(d, "x.zip")):
            _must_be_domain_error(fn, bytes(data))


def test_zip_bomb_refused_from_its_directory() -> None:
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("0.png", b"\x00" * (20 << 20))  # 20 MB of zeros compresses to ~20 kB
    assert len(zbuf.getvalue()) < 100_000
    with pytest.raises(TooLarge, match="unpacks to"):
        decode_sequence(zbuf.getvalue(), "bomb.zip", max_bytes=1 << 20)


def test_png_pixel_bomb_refused() -> None:
    # a PNG whose header claims 100000 x 100000 pixels, with almost no data
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    with pytest.raises(ImosError):
        decode_image(png, "bomb.png")


def test_gzip_nifti_bomb_refused() -> None:
    payload = gzip.compress(b"\x00" * (8 << 20))
    with pytest.raises(ImosError):
        load_volume(payload, "bomb.nii.gz", options=_small_limits())


def _small_limits():  # type: ignore[no-untyped-def]
    from service.io.medical.detect import ReadOptions

    return ReadOptions(limits=ReadLimits(max_bytes=1 << 20))
