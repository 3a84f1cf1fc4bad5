"""NRRD volumes in (through the NIfTI path) and label volumes out, checked against SimpleITK (ITK's NRRD and
NIfTI readers, which 3D Slicer uses): same frames, same grid, same patient geometry."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from service.errors import InvalidFrames, InvalidInput, TooLarge
from service.io.medical.detect import detect_format, load_label_values, load_volume
from service.io.medical.nifti import read_nifti
from service.io.medical.nrrd import read_nrrd_image
from service.io.medical.volume import ReadLimits
from service.io.outputs import encode_results

_T = np.deg2rad(5.0)
AFFINE = np.array([[-0.8, 0.0, 0.0, 60.0],
                   [0.0, 0.9 * np.cos(_T), -2.0 * np.sin(_T), -40.0],
                   [0.0, 0.9 * np.sin(_T), 2.0 * np.cos(_T), 12.5],
                   [0.0, 0.0, 0.0, 1.0]])


def _volume() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(-200, 800, size=(12, 10, 6)).astype(np.int16)


def _via_itk(tmp: Path, data: np.ndarray) -> bytes:
    """The NIfTI written by nibabel, converted to NRRD by ITK (as Slicer would save it)."""
    nib.save(nib.Nifti1Image(data, AFFINE), str(tmp / "v.nii.gz"))
    sitk.WriteImage(sitk.ReadImage(str(tmp / "v.nii.gz")), str(tmp / "v.nrrd"), useCompression=True)
    return (tmp / "v.nrrd").read_bytes()


def test_an_itk_nrrd_reads_like_its_nifti(tmp_path: Path) -> None:
    data = _volume()
    blob = _via_itk(tmp_path, data)
    assert detect_format(blob) == "nrrd"
    from_nrrd = load_volume(blob)
    from_nifti = read_nifti((tmp_path / "v.nii.gz").read_bytes())
    assert len(from_nrrd) == len(from_nifti) == 6
    assert all(np.array_equal(a, b) for a, b in zip(from_nrrd.frames, from_nifti.frames))
    assert from_nrrd.nifti is not None and from_nifti.nifti is not None
    np.testing.assert_allclose(from_nrrd.nifti.affine, AFFINE, atol=1e-5)
    assert from_nrrd.spacing == pytest.approx(from_nifti.spacing)


def test_a_ras_space_nrrd_keeps_its_affine() -> None:
    buf = io.BytesIO()
    nrrd.write(buf, _volume(), {"space": "right-anterior-superior", "space directions": AFFINE[:3, :3].T,
                                "space origin": AFFINE[:3, 3], "encoding": "raw"})
    img = read_nrrd_image(buf.getvalue(), ReadLimits(), InvalidFrames)
    np.testing.assert_allclose(img.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(img.dataobj), _volume())


def test_label_nrrd_lands_on_the_input_grid_for_itk(tmp_path: Path) -> None:
    data = _volume()
    blob = _via_itk(tmp_path, data)
    volume = load_volume(blob)
    labels = [np.where(f > 128, t % 3, 0).astype(np.uint8) for t, f in enumerate(volume.frames)]
    enc = encode_results("nrrd", labels, volume)
    assert enc.suffix == ".nrrd"
    (tmp_path / "labels.nrrd").write_bytes(enc.data)
    (tmp_path / "labels.nii.gz").write_bytes(encode_results("nifti", labels, volume).data)
    ours, ref = sitk.ReadImage(str(tmp_path / "labels.nrrd")), sitk.ReadImage(str(tmp_path / "v.nrrd"))
    np.testing.assert_allclose(ours.GetOrigin(), ref.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(ours.GetSpacing(), ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(ours.GetDirection(), ref.GetDirection(), atol=1e-6)
    as_nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.nii.gz")))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), as_nifti)
    np.testing.assert_array_equal(load_label_values(enc.data), load_label_values(gzip.decompress(
        encode_results("nifti", labels, volume).data)))


def test_nrrd_output_needs_a_volume_with_a_grid() -> None:
    from service.io.medical.volume import Volume

    plain = Volume(frames=[np.zeros((4, 4), np.uint8)], kind="images")
    with pytest.raises(InvalidInput, match="NRRD output needs a NIfTI or NRRD input"):
        encode_results("nrrd", [np.zeros((4, 4), np.uint8)], plain)


def _header(**fields: str) -> bytes:
    base = {"type": "short", "dimension": "3", "sizes": "4 4 2", "encoding": "raw", "endian": "little"}
    base.update(fields)
    return b"NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in base.items()).encode() + b"\n"


@pytest.mark.parametrize(("blob", "message"), [
    (_header(**{"data file": "v.raw"}), "detached NRRD data"),
    (_header(dimension="4", sizes="2 4 4 2"), "only 3-D volumes"),
    (_header(space="scanner-xyz"), "not a 3-D patient space"),
    (_header(type="block"), "not a number type"),
    (_header() + b"\0" * 10, "corrupt or truncated"),
    (_header(sizes="four 4 2"), "header is not readable"),
])
def test_bad_nrrd_is_refused_with_its_reason(blob: bytes, message: str) -> None:
    with pytest.raises(InvalidFrames, match=message):
        load_volume(blob)


def test_a_huge_nrrd_is_refused_before_its_data_is_read() -> None:
    with pytest.raises(TooLarge, match="more than 1000 bytes"):
        read_nrrd_image(_header(sizes="100 100 100"), ReadLimits(max_bytes=1000), InvalidFrames)
