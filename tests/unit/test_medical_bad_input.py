"""Bad medical input raises the typed error naming the problem; no patient identifier in errors or logs."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG4HP41, BasicTextSRStorage, HTJ2KLossless, generate_uid

from service.errors import ImosError, InvalidFrames, InvalidInput, InvalidMask, TooLarge
from service.io.images import encode_mask_png
from service.io.medical import (
    ReadLimits,
    coco_json,
    detect_format,
    load_annotation,
    load_volume,
    read_dicom_series,
    read_nifti,
    read_video,
    write_seg,
)
from service.io.medical.video import encode_video
from tests.medical_builders import DATA_DEV, PATIENT_ID, PATIENT_NAME, ct_series, dev_sequence


def _sequence() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A real MR dev sequence where ../shared is present, else generated frames of the same kind: the
    bad-input cases need a series, not its content."""
    if (DATA_DEV / "JPEGImages" / "hippocampus__003").is_dir():
        return dev_sequence("hippocampus__003")
    from service.bench.synthetic_video import moving_ellipses

    made, made_masks = moving_ellipses(8, 48, 40, 1)
    return [f[:, :, 0] for f in made], [m.astype(np.int64) for m in made_masks]


FRAMES, MASKS = _sequence()
SERIES = ct_series(FRAMES[:8], spacing=(1, 1, 1), modality="MR", shuffle_seed=None)  # in slice order
HEADER = pydicom.dcmread(io.BytesIO(SERIES[0]))
MARKERS = ["MARKERNAME", "SECRET", PATIENT_ID, "ACC-MARKER", "REFERRER", "19700101", "20240102",
           str(HEADER.StudyInstanceUID), str(HEADER.SeriesInstanceUID),
           *(str(pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID) for b in SERIES)]


def _edit(blob: bytes, change: Callable[[pydicom.Dataset], None]) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(blob))
    change(ds)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _with(i: int, change: Callable[[pydicom.Dataset], None]) -> list[bytes]:
    return [_edit(b, change) if k == i else b for k, b in enumerate(SERIES)]


def _compressed(ts: str) -> Callable[[pydicom.Dataset], None]:
    def change(ds: pydicom.Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = ts
        ds.PixelData = encapsulate([b"\x00" * 64])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    return change


def _sr(ds: pydicom.Dataset) -> None:
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    del ds.PixelData


OTHER_SERIES = generate_uid()


def _new_series(ds: pydicom.Dataset) -> None:
    ds.SeriesInstanceUID = OTHER_SERIES


def _duplicate() -> list[bytes]:
    return SERIES + [_edit(SERIES[3], lambda ds: setattr(ds, "SOPInstanceUID", generate_uid()))]


def _anonymised(ds: pydicom.Dataset) -> None:
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(ds, keyword, "")


def _seg_of_anonymised() -> bytes:
    volume = read_dicom_series([_edit(b, _anonymised) for b in SERIES])  # reading works: only the SEG needs them
    return write_seg(volume, MASKS[:8], "m", "1").data


def _seg_as_input() -> bytes:
    volume = read_dicom_series(SERIES)
    return write_seg(volume, MASKS[:8], "m", "1").data


def _other_series_seg() -> bytes:
    other = read_dicom_series(ct_series(FRAMES[:8], spacing=(1, 1, 1), modality="MR"))
    return write_seg(other, [m if t == 5 else np.zeros_like(m) for t, m in enumerate(MASKS[:8])], "m", "1").data


def _mp4() -> bytes:
    return encode_video(FRAMES[:6], fps=10.0)


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[], object]
    error: type[ImosError]
    match: str


CASES = [
    Case("random bytes after DICM", lambda: read_dicom_series([b"\0" * 128 + b"DICM" + bytes(range(256)) * 2]),
         InvalidFrames, "corrupt or truncated"),
    Case("truncated header", lambda: read_dicom_series([SERIES[0][:300]] + SERIES[1:]), InvalidFrames,
         "corrupt or truncated"),
    Case("truncated pixel data", lambda: read_dicom_series(SERIES[:3] + [SERIES[3][:-400]] + SERIES[4:]),
         InvalidFrames, "instance 4: pixel data cannot be decoded"),
    Case("not DICOM at all", lambda: read_dicom_series([b"hello world" * 20]), InvalidFrames, "no DICM"),
    Case("two series", lambda: read_dicom_series(SERIES[:4] + [_edit(b, _new_series) for b in SERIES[4:]]),
         InvalidFrames, "mixes 2 series"),
    Case("missing pixel data", lambda: read_dicom_series(_with(2, lambda ds: ds.__delattr__("PixelData"))),
         InvalidFrames, "instance 3 has no pixel data"),
    Case("structured report", lambda: read_dicom_series(_with(1, _sr)), InvalidFrames, "Basic Text SR"),
    Case("SEG given as the image", lambda: read_dicom_series([_seg_as_input()]), InvalidFrames, "not an image"),
    Case("missing slice", lambda: read_dicom_series(SERIES[:4] + SERIES[5:]), InvalidFrames,
         "inconsistent slice spacing"),
    Case("duplicate slice", lambda: read_dicom_series(_duplicate()), InvalidFrames, "share one position"),
    Case("tilted slice", lambda: read_dicom_series(_with(
        5, lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.9, 0.43589]))), InvalidFrames,
        "inconsistent orientations"),
    Case("mixed sizes", lambda: read_dicom_series(_with(
        5, lambda ds: (setattr(ds, "Columns", ds.Columns - 2), setattr(ds, "PixelData", ds.PixelData[:-4 * ds.Rows])))),
        InvalidFrames, "differ in size"),
    Case("HTJ2K without decoder", lambda: read_dicom_series(_with(0, _compressed(HTJ2KLossless))), InvalidFrames,
         "no decoder for it is installed"),
    Case("MPEG-4 transfer syntax", lambda: read_dicom_series(_with(0, _compressed(MPEG4HP41))), InvalidFrames,
         "cannot decode"),
    Case("too many frames", lambda: read_dicom_series(SERIES, limits=ReadLimits(max_frames=4)), TooLarge, "more than 4"),
    Case("too many bytes", lambda: read_dicom_series(SERIES, limits=ReadLimits(max_bytes=10_000)), TooLarge, "exceeds"),
    Case("too many pixels", lambda: read_dicom_series(SERIES, limits=ReadLimits(max_frame_pixels=100)), TooLarge,
         "exceed the limit"),
    Case("truncated mp4", lambda: read_video(_mp4()[:400]), InvalidFrames, "cannot be decoded"),
    Case("garbage avi", lambda: read_video(b"RIFF\x00\x01\x00\x00AVI LIST" + bytes(500)), InvalidFrames, "video"),
    Case("unknown format", lambda: detect_format(b"\x01\x02 just text"), InvalidFrames, "unrecognised format"),
    Case("truncated nii.gz", lambda: read_nifti(_nii_gz()[:-60]), InvalidFrames, "truncated"),
    Case("4-D NIfTI", lambda: read_nifti(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.int16), np.eye(4)).to_bytes()),
         InvalidFrames, "only 3-D"),
    Case("mask of another size", lambda: load_annotation(encode_mask_png(np.ones((5, 5), np.uint8)),
                                                         read_dicom_series(SERIES)), InvalidMask, "matches no frame"),
    Case("SEG of another series", lambda: load_annotation(_other_series_seg(), read_dicom_series(SERIES)),
         InvalidMask, "references no frame"),
    Case("mask without volume format", lambda: load_annotation(b"\x00\x01garbage"), InvalidMask, "unrecognised"),
    Case("seg of an anonymised series", _seg_of_anonymised, InvalidInput,
         "lacks SOPClassUID .*SOPInstanceUID .*StudyInstanceUID .*SeriesInstanceUID"),
]


def _nii_gz() -> bytes:
    import gzip
    return gzip.compress(nib.Nifti1Image(np.arange(4000, dtype=np.int16).reshape(20, 20, 10), np.eye(4)).to_bytes())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_raises_typed_error(case: Case) -> None:
    with pytest.raises(case.error, match=case.match):
        case.run()


def test_no_patient_identifiers_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    assert PATIENT_NAME.startswith("MARKERNAME")
    caplog.set_level(logging.DEBUG)
    messages = []
    for case in CASES:
        with pytest.raises(ImosError) as info:
            case.run()
        messages.append(str(info.value))
    volume = load_volume(SERIES)  # the successful path logs too
    write_seg(volume, MASKS[:8], "imos-lite", "1")
    coco_json(MASKS[:8])
    logged = [r.getMessage() + " " + " ".join(map(str, r.__dict__.values())) for r in caplog.records]
    for marker in MARKERS:
        assert not [m for m in messages if marker in m], marker
        assert not [entry for entry in logged if marker in entry], marker


def test_invalid_input_is_the_base_of_every_bad_upload_error() -> None:
    assert all(issubclass(c.error, InvalidInput) for c in CASES)
