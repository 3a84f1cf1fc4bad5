"""Medical readers: DICOM series (ordering, rescale, windowing, multi-frame), NIfTI, video, auto-detection."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from service.errors import InvalidInput
from service.io.medical import (
    PRESETS,
    IntensityOptions,
    ReadOptions,
    detect_format,
    load_annotation,
    load_volume,
    read_dicom_series,
    read_nifti,
    read_video,
)
from service.io.medical.intensity import apply_window
from service.io.medical.video import encode_video
from tests.medical_builders import HU_OFFSET, ct_series, dev_sequence, enhanced_ct, us_cine

CT_SEQ, MR_SEQ, ECHO_SEQ = "deeplesion__000001_02_01_008-023", "hippocampus__003", "echonet__0X1012703CDC1436FE"


@pytest.fixture(scope="module")
def ct() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return dev_sequence(CT_SEQ)


@pytest.fixture(scope="module")
def mr() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return dev_sequence(MR_SEQ)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_ct_series_is_ordered_by_geometry_and_shown_in_its_own_window(ct) -> None:
    frames, _ = ct
    volume = read_dicom_series(ct_series(frames))  # shuffled files, InstanceNumber counting backwards
    assert volume.kind == "dicom" and _same(volume.frames, frames)
    assert volume.spacing == pytest.approx((0.7, 0.7, 5.0))
    z = [float(ds.ImagePositionPatient[2]) for ds in volume.dicom.datasets]
    assert z == sorted(z) and all("PixelData" not in ds for ds in volume.dicom.datasets)


def test_oblique_slices_are_ordered_along_the_normal(mr) -> None:
    frames, _ = mr
    volume = read_dicom_series(ct_series(frames, spacing=(1, 1, 1), tilt_deg=25.0, shuffle_seed=3))
    assert _same(volume.frames, frames)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_ct_presets_apply_the_rescaled_hounsfield_window(ct, preset: str) -> None:
    frames, _ = ct
    volume = read_dicom_series(ct_series(frames[:3]), IntensityOptions(preset=preset))
    expected = [apply_window(f.astype(np.float32) + HU_OFFSET, PRESETS[preset]) for f in frames[:3]]
    assert _same(volume.frames, expected)


def test_explicit_level_and_width_override_the_series_window(ct) -> None:
    frames, _ = ct
    volume = read_dicom_series(ct_series(frames[:2]), IntensityOptions(level=0.0, width=100.0))
    hu = frames[0].astype(np.float32) + HU_OFFSET
    assert np.array_equal(volume.frames[0], np.clip((hu + 50) * 2.55 + 0.5, 0, 255).astype(np.uint8))
    with pytest.raises(InvalidInput, match="both"):
        read_dicom_series(ct_series(frames[:2]), IntensityOptions(level=40.0))
    with pytest.raises(InvalidInput, match="unknown window preset"):
        read_dicom_series(ct_series(frames[:2]), IntensityOptions(preset="kidney"))


def test_mr_is_scaled_by_volume_percentiles_and_refuses_hu_presets(mr) -> None:
    frames, _ = mr
    blobs = ct_series(frames, spacing=(1, 1, 1), modality="MR")
    volume = read_dicom_series(blobs)
    stored, shown = np.stack(frames).ravel(), np.stack(volume.frames).ravel()
    order = np.argsort(stored, kind="stable")
    assert np.all(np.diff(shown[order].astype(int)) >= 0)  # monotonic in the stored value
    assert shown.min() == 0 and shown.max() == 255
    with pytest.raises(InvalidInput, match="Hounsfield"):
        read_dicom_series(blobs, IntensityOptions(preset="brain"))


def test_folder_zip_and_instance_list_read_the_same(mr, tmp_path: Path) -> None:
    frames, _ = mr
    blobs = ct_series(frames, spacing=(1, 1, 1), modality="MR")
    folder = tmp_path / "series" / "sub"
    folder.mkdir(parents=True)
    for i, blob in enumerate(blobs):
        (folder / f"IM{i:04d}").write_bytes(blob)
    (folder / "notes.txt").write_text("not dicom")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, blob in enumerate(blobs):
            zf.writestr(f"export/{i}.dcm", blob)
        zf.writestr("DICOMDIR", b"x")
    reads = [read_dicom_series(blobs), read_dicom_series(tmp_path / "series"), read_dicom_series(buf.getvalue()),
             load_volume(tmp_path / "series"), load_volume(buf.getvalue()), load_volume(list(blobs))]
    assert all(_same(r.frames, reads[0].frames) for r in reads)


def test_ultrasound_cine_keeps_pixels_and_frame_rate() -> None:
    frames, _ = dev_sequence(ECHO_SEQ)
    volume = read_dicom_series(us_cine(frames, frame_time_ms=20.0))
    assert _same(volume.frames, frames) and volume.fps == pytest.approx(50.0)
    assert volume.dicom.multiframe and volume.dicom.frame_refs == tuple((0, i) for i in range(len(frames)))


def test_enhanced_ct_frames_are_reordered_by_plane_position(mr) -> None:
    frames, _ = mr
    blob, stored_order = enhanced_ct(frames)
    volume = read_dicom_series(blob)
    assert _same(volume.frames, frames)
    assert [f for _, f in volume.dicom.frame_refs] == [stored_order.index(k) for k in range(len(frames))]
    assert volume.spacing == pytest.approx((0.8, 0.8, 2.5))


def _nifti(data: np.ndarray, affine: np.ndarray, gz: bool = True) -> bytes:
    img = nib.Nifti1Image(data, affine)
    raw = img.to_bytes()
    if not gz:
        return raw
    import gzip
    return gzip.compress(raw)


def test_nifti_axis_defaults_to_axial_and_frames_are_radiological() -> None:
    vol = np.zeros((6, 7, 5), dtype=np.int16)
    vol[5, 6, :] = 1000  # RAS: most right, most anterior -> top-left of a radiological axial view
    ras = np.diag([0.8, 0.9, 2.0, 1.0])
    volume = read_nifti(_nifti(vol, ras))
    assert len(volume) == 5 and volume.shape == (7, 6)
    assert all(f[0, 0] == 255 and f.sum() == 255 for f in volume.frames)
    assert volume.spacing == pytest.approx((0.9, 0.8, 2.0))
    lps = np.diag([-0.8, -0.9, 2.0, 1.0])  # x, y flipped: file voxel (0, 0) is most right and anterior
    vol_lps = np.zeros_like(vol)
    vol_lps[0, 0, :] = 1000
    assert all(f[0, 0] == 255 for f in read_nifti(_nifti(vol_lps, lps, gz=False)).frames)


def test_nifti_picks_the_file_axis_closest_to_axial() -> None:
    vol = np.random.default_rng(0).integers(0, 500, size=(9, 6, 7)).astype(np.int16)
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])  # axis 0 runs S
    volume = read_nifti(_nifti(vol, affine))
    assert len(volume) == 9 and volume.nifti.axis == 0
    assert len(read_nifti(_nifti(vol, affine), axis=2)) == 7


def test_video_round_trip_mp4_avi_mov() -> None:
    frames, _ = dev_sequence(ECHO_SEQ)
    for container, codec in (("mp4", "h264"), ("avi", "mjpeg"), ("mov", "h264")):
        data = encode_video(frames, fps=50.0, container=container, codec=codec, quality=10)
        assert detect_format(data) == "video"
        volume = read_video(data)
        assert volume.kind == "video" and volume.fps == pytest.approx(50.0) and len(volume) == len(frames)
        assert volume.frames[0].shape == frames[0].shape  # grey stays grey
        error = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(volume.frames, frames)])
        assert error < 4.0, (container, error)


def test_detect_format_by_magic(mr) -> None:
    from service.io.images import encode_mask_png
    from service.io.sequence import encode_npy, encode_png_zip
    frames, masks = mr
    blobs = ct_series(frames[:2], spacing=(1, 1, 1), modality="MR")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1", blobs[0])
    nii = _nifti(np.zeros((4, 4, 3), np.int16), np.eye(4))
    assert detect_format(blobs[0]) == "dicom" and detect_format(buf.getvalue()) == "dicom"
    assert detect_format(nii) == "nifti"
    assert detect_format(_nifti(np.zeros((4, 4, 3), np.int16), np.eye(4), gz=False)) == "nifti"
    assert detect_format(encode_png_zip([encode_mask_png(masks[0])])) == "images"
    assert detect_format(encode_npy(np.stack(frames))) == "images"
    volume = load_volume(encode_npy(np.stack(frames)), options=ReadOptions())
    assert volume.kind == "images" and len(volume) == len(frames)
    annotation = load_annotation(encode_mask_png(masks[5]), volume)
    assert annotation.frame is None and np.array_equal(annotation.mask, masks[5])
    stacked = np.zeros((len(frames),) + masks[0].shape, np.int64)
    stacked[7] = masks[7]
    annotation = load_annotation(encode_npy(stacked), volume)
    assert annotation.frame == 7 and np.array_equal(annotation.mask, masks[7])


def test_dicom_instances_keep_headers_for_output(mr) -> None:
    frames, _ = mr
    blobs = ct_series(frames[:4], spacing=(1, 1, 1), modality="MR")
    volume = read_dicom_series(blobs)
    uids = {str(pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID) for b in blobs}
    assert {str(ds.SOPInstanceUID) for ds in volume.dicom.datasets} == uids
    assert volume.dicom.modality == "MR"
