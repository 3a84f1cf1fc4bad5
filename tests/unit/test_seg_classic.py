"""The default DICOM SEG is the classic Segmentation Storage class with BINARY frames, carrying what viewers
(OHIF's segmentation mode among them) read: segments with labels and colours, the referenced series, the
frame of reference, per-frame positions and source references; an independent validator (dicom3tools'
dciodvfy) finds no error in it. LABELMAP stays available on request."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.errors import InvalidInput
from service.io.medical.dicom_series import read_dicom_series
from service.io.medical.seg import LABELMAP_SUPPORTED, write_seg
from service.io.medical.volume import Volume
from service.io.outputs import encode_results
from tests.medical_builders import three_object_ct

CLASSIC, LABELMAP = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"
NAMES = {1: "Liver", 2: "Tumour", 3: "Vessel"}


@pytest.fixture(scope="module")
def case() -> tuple[Volume, list[np.ndarray]]:
    """Three objects over 8 slices uploaded in shuffled order; the tumour is absent on slices 3 and 4."""
    instances, labels = three_object_ct()
    volume = read_dicom_series(instances)
    return volume, labels


def test_default_is_classic_binary_with_what_viewers_read(case: tuple[Volume, list[np.ndarray]]) -> None:
    volume, labels = case
    out = write_seg(volume, labels, "imos-lite", "2", NAMES)
    seg = pydicom.dcmread(io.BytesIO(out.data))
    assert str(seg.SOPClassUID) == CLASSIC and seg.SegmentationType == "BINARY" and out.segmentation_type == "BINARY"
    src = {str(ds.SOPInstanceUID): ds for ds in volume.dicom.datasets}
    first = next(iter(src.values()))
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID and seg.StudyInstanceUID == first.StudyInstanceUID
    (ref,) = seg.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == first.SeriesInstanceUID
    assert {str(r.ReferencedSOPInstanceUID) for r in ref.ReferencedInstanceSequence} == set(src)
    segments = list(seg.SegmentSequence)
    assert [s.SegmentNumber for s in segments] == [1, 2, 3] and [s.SegmentLabel for s in segments] == list(
        NAMES.values())
    colours = [tuple(s.RecommendedDisplayCIELabValue) for s in segments]
    assert len(set(colours)) == 3
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert "PixelMeasuresSequence" in shared and "PlaneOrientationSequence" in shared
    pixels = seg.pixel_array.reshape(-1, 48, 56)
    by_uid = {str(ds.SOPInstanceUID): t for t, ds in enumerate(volume.dicom.datasets)}
    order = [by_uid[str(volume.dicom.datasets[d].SOPInstanceUID)] for d, _ in volume.dicom.frame_refs]
    seen = set()
    for f, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source_uid = str(group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        source = src[source_uid]
        assert list(group.PlanePositionSequence[0].ImagePositionPatient) == list(source.ImagePositionPatient)
        slice_index = order.index(by_uid[source_uid])  # display order, the labels' order
        np.testing.assert_array_equal(pixels[f] != 0, labels[slice_index] == number)
        seen.add((slice_index, number))
    assert seen == {(k, n) for k in range(8) for n in (1, 2, 3) if not (n == 2 and k in (3, 4))}


@pytest.mark.skipif(not LABELMAP_SUPPORTED, reason="the installed highdicom writes no LABELMAP")
def test_labelmap_on_request_everywhere_it_is_named(case: tuple[Volume, list[np.ndarray]]) -> None:
    volume, labels = case
    for kind in ("labelmap", "LABELMAP"):
        seg = pydicom.dcmread(io.BytesIO(write_seg(volume, labels, "imos-lite", "2", NAMES, kind).data))
        assert str(seg.SOPClassUID) == LABELMAP and seg.SegmentationType == "LABELMAP"
    enc = encode_results("seg", labels, volume, NAMES, "imos-lite:2", "labelmap")
    assert str(pydicom.dcmread(io.BytesIO(enc.data)).SOPClassUID) == LABELMAP
    assert str(pydicom.dcmread(io.BytesIO(encode_results("seg", labels, volume, NAMES).data)).SOPClassUID) == CLASSIC
    with pytest.raises(InvalidInput, match="seg_type must be binary"):
        encode_results("seg", labels, volume, NAMES, "imos-lite:2", "fractional")


def _dciodvfy() -> str:
    found = shutil.which("dciodvfy")
    if found is None:
        reason = "dciodvfy not installed (apt-get install dicom3tools; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    return found


def test_an_independent_validator_finds_no_error_in_the_default(case: tuple[Volume, list[np.ndarray]],
                                                                tmp_path: Path) -> None:
    volume, labels = case
    path = tmp_path / "seg.dcm"
    path.write_bytes(write_seg(volume, labels, "imos-lite", "2", NAMES).data)
    done = subprocess.run([_dciodvfy(), str(path)], capture_output=True, text=True, timeout=60)
    report = done.stdout + done.stderr
    assert "Segmentation" in report or done.returncode == 0, report[-2000:]
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)
