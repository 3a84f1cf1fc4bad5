"""`imos segment` round trips: DICOM series -> SEG, NIfTI -> NIfTI, video -> RLE / PNG, with previews."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from service.cli.main import main
from service.io.medical.rle import decode_rle
from tests.medical_builders import DATA_DEV, ct_series, dev_sequence

SEQ = "deeplesion__000001_02_01_008-023"
FAST = ["--quiet", "--set", "size=64", "--model", "tiny"]


@pytest.fixture()
def lesion() -> tuple[list[np.ndarray], list[np.ndarray]]:
    if not (DATA_DEV / "JPEGImages" / SEQ).is_dir():
        pytest.skip("../shared/data/dev is not present")
    frames, masks = dev_sequence(SEQ)
    return frames[:6], masks[:6]


def _mid(masks: list[np.ndarray]) -> int:
    return int(np.argmax([m.sum() for m in masks]))


def test_dicom_series_to_seg(lesion, tiny_repo: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frames, masks = lesion
    series = tmp_path / "series"
    series.mkdir()
    for i, data in enumerate(ct_series(frames)):
        (series / f"i{i}.dcm").write_bytes(data)
    k = _mid(masks)
    Image.fromarray(masks[k].astype(np.uint8)).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert main(["segment", str(series), "--mask", str(tmp_path / "mask.png"), "--frame", str(k), "--format", "seg",
                 "--labels", "1=Lesion", "--preview", "--window", "27.5,255", "--model-repo", str(tiny_repo),
                 *FAST, "-o", str(out)]) == 0
    seg = hd.seg.segread(out / "masks.dcm")
    assert {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}[1] == "Lesion"
    assert seg.SegmentationType == "BINARY" and str(seg.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.66.4"
    sources = {pydicom.dcmread(p).SOPInstanceUID for p in series.iterdir()}
    refs = {r.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence for r in item.ReferencedInstanceSequence}
    assert refs <= sources and refs
    assert Image.open(out / "preview.gif").n_frames == len(frames)
    assert Image.open(out / "contact_sheet.png").size[0] > 0


def test_nifti_to_nifti(lesion, tiny_repo: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frames, masks = lesion
    vol = np.stack(frames, axis=-1).astype(np.int16)  # slices along the third voxel axis
    affine = np.diag([0.7, 0.7, 5.0, 1.0])
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "ct.nii.gz")
    k = _mid(masks)
    lab = np.zeros(vol.shape, np.uint8)
    lab[..., k] = masks[k]
    nib.save(nib.Nifti1Image(lab, affine), tmp_path / "ann.nii.gz")
    out = tmp_path / "out"
    # no --frame: the labelmap's one labelled slice is the annotated frame
    assert main(["segment", str(tmp_path / "ct.nii.gz"), "--mask", str(tmp_path / "ann.nii.gz"), "--format", "nifti",
                 "--model-repo", str(tiny_repo), *FAST, "-o", str(out)]) == 0
    result = nib.load(out / "masks.nii.gz")
    assert result.shape == vol.shape and np.allclose(result.affine, affine)
    data = np.asarray(result.dataobj)
    assert np.array_equal(data[..., k] > 0, lab[..., k] > 0)


def test_video_to_rle_and_png(tiny_repo: Path, tmp_path: Path) -> None:
    import av

    from service.bench.synthetic_video import moving_ellipses

    frames, masks = moving_ellipses(8, 64, 96, 1)
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    np.save(tmp_path / "m.npy", masks[0])
    assert main(["segment", str(path), "--mask", str(tmp_path / "m.npy"), "--frame", "0", "--format", "rle",
                 "--model-repo", str(tiny_repo), *FAST, "-o", str(tmp_path / "rle")]) == 0
    doc = json.loads((tmp_path / "rle" / "masks.json").read_text())
    first = [a for a in doc["annotations"] if a["image_id"] in (0, 1)][0]
    assert decode_rle(first["segmentation"]).shape == (64, 96)
    assert main(["segment", str(path), "--mask", str(tmp_path / "m.npy"), "--frame", "0",
                 "--model-repo", str(tiny_repo), *FAST, "-o", str(tmp_path / "png")]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 8


def test_wrong_output_for_input_is_a_clear_error(tiny_repo: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "f.npy", np.zeros((3, 32, 32), np.uint8))
    m = np.zeros((32, 32), np.uint8)
    m[5:9, 5:9] = 1
    np.save(tmp_path / "m.npy", m)
    assert main(["segment", str(tmp_path / "f.npy"), "--mask", str(tmp_path / "m.npy"), "--frame", "0",
                 "--format", "seg", "--model-repo", str(tiny_repo), *FAST, "-o", str(tmp_path / "o")]) == 2
    assert "DICOM SEG output needs a DICOM input" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "f.npy"), "--mask", str(tmp_path / "m.npy"),
                 "--model-repo", str(tiny_repo), *FAST, "-o", str(tmp_path / "o")]) == 2
    assert "--frame" in capsys.readouterr().err
