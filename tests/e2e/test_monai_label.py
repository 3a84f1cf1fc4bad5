"""3D Slicer's path: MONAI Label's own client (monailabel 0.8.5, MONAILabelClient, the code the Slicer module's
client copies) against `imos serve` with the bundled model. The calls go in the module's order (auth, info,
train check, upload, infer with the painted label, a correction, Submit Label then Run, the loaded-volume
session path); the answers are label volumes on the input's grid, read by SimpleITK (ITK, Slicer's reader)
and equal to `imos segment` on the same volume and slice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from tests.e2e.procs import ROOT
from tests.medical_builders import dev_sequence

MODEL = "imos"
LABEL_INFO = [{"name": "edema", "id": 1}, {"name": "marker", "id": 2}]
# A file grid unlike the canonical one: x flipped (LAS), anisotropic voxels, an offset origin, a small tilt
_TILT = np.deg2rad(4.0)
AFFINE = np.array([[-0.9, 0.0, 0.0, 80.0],
                   [0.0, 0.9 * np.cos(_TILT), -1.5 * np.sin(_TILT), -60.0],
                   [0.0, 0.9 * np.sin(_TILT), 1.5 * np.cos(_TILT), 25.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _to_file(frames: list[np.ndarray]) -> np.ndarray:
    """Display frames (radiological view) -> voxels [X, Y, Z] of AFFINE's grid (x stored flipped)."""
    canon = np.stack([f[::-1, ::-1].T for f in frames], axis=2)  # RAS: the reader's frame = slab.T[::-1, ::-1]
    return np.ascontiguousarray(canon[::-1])


def _save(path: Path, frames: list[np.ndarray], dtype: type = np.int16) -> Path:
    nib.save(nib.Nifti1Image(_to_file(frames).astype(dtype), AFFINE), str(path))
    return path


def _painted(shape: tuple[int, int], n: int, slices: dict[int, np.ndarray]) -> list[np.ndarray]:
    out = [np.zeros(shape, np.uint8) for _ in range(n)]
    for k, mask in slices.items():
        out[k] = mask.astype(np.uint8)
    return out


def _two_objects(gt: np.ndarray) -> np.ndarray:
    """The edema (1) and a marker (2): a disc in the other hemisphere."""
    mask = (gt > 0).astype(np.uint8)
    yy, xx = np.mgrid[: gt.shape[0], : gt.shape[1]]
    mask[(yy - 80) ** 2 + (xx - 45) ** 2 < 12**2] = 2
    return mask


def _segment(volume: Path, label: Path, out: Path) -> np.ndarray:
    """`imos segment` on the volume from the one painted slice: its NIfTI answer as ITK reads it [Z, Y, X]."""
    done = subprocess.run([sys.executable, "-m", "service.cli.main", "segment", str(volume), "--mask", str(label),
                           "--format", "nifti", "--quiet", "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return sitk.GetArrayFromImage(sitk.ReadImage(str(next(out.glob("*.nii.gz")))))


def _same_grid(answer: sitk.Image, volume: Path) -> None:
    ref = sitk.ReadImage(str(volume))
    assert answer.GetSize() == ref.GetSize()
    np.testing.assert_allclose(answer.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(answer.GetSpacing(), ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(answer.GetDirection(), ref.GetDirection(), atol=1e-5)


@pytest.fixture(scope="module")
def brats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    frames, gt = dev_sequence("brats__BraTS2021_01646_flair")
    tmp = tmp_path_factory.mktemp("monai-label")
    k = 26
    painted = _painted(frames[0].shape, len(frames), {k: _two_objects(gt[k])})
    return {"volume": _save(tmp / "brats.nii.gz", frames), "label": _save(tmp / "label.nii.gz", painted, np.uint8),
            "frames": frames, "gt": gt, "k": k, "tmp": tmp}


@pytest.fixture()
def client(bundled_service: str, tmp_path: Path) -> MONAILabelClient:
    return MONAILabelClient(f"{bundled_service}/integrations/monai-label", tmpdir=str(tmp_path), client_id="slicer")


def test_connect_like_the_slicer_module(client: MONAILabelClient) -> None:
    assert client.auth_enabled() is False
    info = client.info()
    assert "config" not in info and info["name"] == "iMOS Serve"
    model = info["models"][MODEL]
    assert model["type"] == "segmentation" and model["dimension"] == 3 and model["description"]
    assert info["labels"] == model["labels"] and all(isinstance(n, str) for n in info["labels"])
    assert client.train_status(check_if_running=True) is False


def test_upload_paint_one_slice_infer_then_correct(client: MONAILabelClient, brats: dict[str, Any]) -> None:
    assert client.upload_image(str(brats["volume"]), image_id="brats-case")["image"] == "brats-case"
    result, params = client.infer(MODEL, "brats-case", {"result_extension": ".nrrd", "result_dtype": "uint8",
                                                        "label_info": LABEL_INFO}, label_in=str(brats["label"]))
    assert result.endswith(".nrrd") and params["label_names"] == {"edema": 1, "marker": 2}
    answer = sitk.ReadImage(result)
    _same_grid(answer, brats["volume"])
    got = sitk.GetArrayFromImage(answer)
    expected = _segment(brats["volume"], brats["label"], brats["tmp"] / "segment")
    np.testing.assert_array_equal(got, expected)
    assert set(np.unique(got)) == {0, 1, 2}

    # The user fixes slice j in Slicer (paints the ground truth there) and runs again with the whole segmentation
    j = brats["k"] + 12
    fixed = sitk.GetArrayFromImage(answer)  # [Z, Y, X] of the file grid: Z is the frame axis here
    file_fix = _to_file(_painted(brats["frames"][0].shape, len(brats["frames"]), {j: brats["gt"][j]}))
    fixed[j] = file_fix.transpose(2, 1, 0)[j]
    fixed_path = brats["tmp"] / "fixed.nrrd"
    corrected_image = sitk.GetImageFromArray(fixed.astype(np.uint8))
    corrected_image.CopyInformation(answer)
    sitk.WriteImage(corrected_image, str(fixed_path))
    result2, params2 = client.infer(MODEL, "brats-case", {"result_extension": ".nrrd", "label_info": LABEL_INFO},
                                    label_in=str(fixed_path))
    got2 = sitk.GetArrayFromImage(sitk.ReadImage(result2))
    np.testing.assert_array_equal(got2[j], fixed[j])  # the fix is kept as painted
    assert not np.array_equal(got2, got)  # and the frames around it were recomputed
    np.testing.assert_array_equal(got2[brats["k"]], got[brats["k"]])



def test_submit_label_then_run_and_the_loaded_volume_session(client: MONAILabelClient, brats: dict[str, Any]) -> None:
    """Slicer's other two paths: "Submit Label" then Run on an uploaded image; and a volume already loaded
    in Slicer, sent once as a session (as NRRD here) and named by its session id on each infer."""
    nrrd_volume = brats["tmp"] / "brats.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(brats["volume"])), str(nrrd_volume))
    client.upload_image(str(nrrd_volume), image_id="brats-nrrd")
    saved = client.save_label("brats-nrrd", str(brats["label"]), params={"label_info": LABEL_INFO})
    assert saved["annotated_frames"] == [brats["k"]]
    result, params = client.infer(MODEL, "brats-nrrd", {"result_extension": ".nii.gz"})
    assert result.endswith(".nii.gz") and params["label_names"] == {"edema": 1, "marker": 2}
    answer = sitk.ReadImage(result)
    _same_grid(answer, brats["volume"])
    expected = _segment(brats["volume"], brats["label"], brats["tmp"] / "segment-saved")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(answer), expected)

    session = client.create_session(str(nrrd_volume))
    sid = session["session_id"]
    assert client.get_session(sid)["session_id"] == sid
    # the same voxels are the same session: its painted slice and result are there already
    again, _ = client.infer(MODEL, "Volume", {"result_extension": ".nrrd"}, session_id=sid)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(again)), expected)


def _refused(status: int, text: str, call: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(MONAILabelClientException) as caught:
        call(*args, **kwargs)
    assert caught.value.msg.startswith(f"Status: {status};") and text in caught.value.msg, caught.value.msg


def test_errors_are_clear_to_the_client(client: MONAILabelClient, brats: dict[str, Any]) -> None:
    _refused(404, "no image 'never-uploaded'", client.infer, MODEL, "never-uploaded", {},
             label_in=str(brats["label"]))
    # other voxels than the other tests' (the same voxels would find their session, painting and all)
    fresh = _save(brats["tmp"] / "errors.nii.gz", brats["frames"][::-1])
    client.upload_image(str(fresh), image_id="brats-errors")
    _refused(404, "no model 'deepedit'", client.infer, "deepedit", "brats-errors", {})
    _refused(400, "result_extension must be one of", client.infer, MODEL, "brats-errors",
             {"result_extension": ".mha"}, label_in=str(brats["label"]))
    _refused(400, "nothing is painted", client.infer, MODEL, "brats-errors", {"result_extension": ".nrrd"})
    small = brats["tmp"] / "small-label.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.uint8), AFFINE), str(small))
    _refused(400, "does not match the image", client.infer, MODEL, "brats-errors", {}, label_in=str(small))
    png = brats["tmp"] / "frame.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    _refused(400, "", client.upload_image, str(png), image_id="not-a-volume")


def test_a_volume_of_318_slices(client: MONAILabelClient, brats: dict[str, Any]) -> None:
    frames = brats["frames"] * 6
    k = 185  # the edema is on this slice (185 % 53 = 26) as well as the marker
    tmp = brats["tmp"]
    volume = _save(tmp / "long.nii.gz", frames)
    label = _save(tmp / "long-label.nii.gz", _painted(frames[0].shape, len(frames),
                                                      {k: _two_objects(brats["gt"][k % len(brats["frames"])])}),
                  np.uint8)
    client.upload_image(str(volume), image_id="long")
    result, params = client.infer(MODEL, "long", {"result_extension": ".nrrd", "label_info": LABEL_INFO},
                                  label_in=str(label))
    answer = sitk.ReadImage(result)
    _same_grid(answer, volume)
    assert answer.GetSize()[2] == 318 and params["frames"] == 318
    np.testing.assert_array_equal(sitk.GetArrayFromImage(answer), _segment(volume, label, tmp / "segment-long"))
