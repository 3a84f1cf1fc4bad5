"""Medical writers: DICOM SEG (read back with highdicom), NIfTI labelmaps, COCO RLE, previews."""

from __future__ import annotations

import gzip
import io
import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation
from PIL import Image

from service.errors import InvalidInput, InvalidMask
from service.io.medical import (
    LABELMAP_SUPPORTED,
    coco_document,
    coco_json,
    contact_sheet,
    decode_rle,
    encode_rle,
    labels_from_coco,
    load_annotation,
    overlay_gif,
    overlay_mp4,
    read_dicom_series,
    read_nifti,
    read_seg_annotation,
    read_video,
    write_labelmap,
    write_seg,
)
from service.io.medical.nifti import _frames_of
from service.io.medical.preview import select_frames
from tests.medical_builders import ct_series, dev_sequence, enhanced_ct, us_cine

MR_SEQ, CT_SEQ = "hippocampus__003", "deeplesion__000001_02_01_008-023"


@pytest.fixture(scope="module")
def mr() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return dev_sequence(MR_SEQ)


@pytest.fixture(scope="module")
def mr_volume(mr):  # type: ignore[no-untyped-def]
    return read_dicom_series(ct_series(mr[0], spacing=(1, 1, 1), modality="MR"))


@pytest.mark.parametrize("kind", ["LABELMAP", "BINARY"])
def test_seg_reads_back_slice_by_slice_with_the_right_references(mr, mr_volume, kind: str) -> None:
    if kind == "LABELMAP" and not LABELMAP_SUPPORTED:
        pytest.skip("installed highdicom has no LABELMAP")
    _, masks = mr
    out = write_seg(mr_volume, masks, "imos-lite", "1.2", names=["anterior", "posterior"], segmentation_type=kind)
    seg = hd.seg.segread(io.BytesIO(out.data))
    assert out.segmentation_type == kind == str(seg.SegmentationType) and out.segments == 2
    uids = [str(ds.SOPInstanceUID) for ds in mr_volume.dicom.datasets]
    referenced = {u for _, _, u in seg.get_source_image_uids()}
    assert referenced == set(uids)
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == str(mr_volume.dicom.datasets[0].SeriesInstanceUID)
    for t, uid in enumerate(uids):  # slice by slice, through highdicom's own source-instance lookup
        got = seg.get_pixels_by_source_instance([uid], combine_segments=True)[0]
        assert np.array_equal(got, masks[t]), t
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence if int(s.SegmentNumber) > 0}
    assert [segments[n].SegmentLabel for n in (1, 2)] == ["anterior", "posterior"]
    algo = segments[1].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("imos-lite", "1.2")
    empty = sum(1 for m in masks if not m.any())
    if kind == "BINARY":  # one frame per non-empty (slice, segment): empty frames omitted
        assert int(seg.NumberOfFrames) == sum(len(np.unique(m)) - 1 for m in masks)
    else:
        assert int(seg.NumberOfFrames) == len(masks) - empty


def test_seg_default_names_and_sparse_object_ids(mr_volume, mr) -> None:
    _, masks = mr
    relabelled = [np.where(m == 2, 7, m) for m in masks]  # ids 1 and 7 -> segments 1 and 2
    out = write_seg(mr_volume, relabelled, "m", "1")
    seg = hd.seg.segread(io.BytesIO(out.data))
    labels = [s.SegmentLabel for s in seg.SegmentSequence if int(s.SegmentNumber) > 0]
    assert labels == ["Object 1", "Object 7"]


def test_seg_on_enhanced_multiframe_source(mr) -> None:
    frames, masks = mr
    blob, _ = enhanced_ct(frames)
    volume = read_dicom_series(blob)
    out = write_seg(volume, masks, "imos-lite", "1", segmentation_type="BINARY")
    seg = hd.seg.segread(io.BytesIO(out.data))
    uid = str(volume.dicom.datasets[0].SOPInstanceUID)
    for t, (_, f) in enumerate(volume.dicom.frame_refs):
        got = seg.get_pixels_by_source_frame(uid, [f + 1], combine_segments=True)[0]
        assert np.array_equal(got, masks[t])


@pytest.mark.parametrize("kind", ["LABELMAP", "BINARY"])
def test_seg_annotation_of_one_slice(mr_volume, mr, kind: str) -> None:
    _, masks = mr
    one = [m if t == 9 else np.zeros_like(m) for t, m in enumerate(masks)]
    out = write_seg(mr_volume, one, "annotator", "1", segmentation_type=kind)
    annotation = load_annotation(out.data, mr_volume)
    assert annotation.frame == 9 and np.array_equal(annotation.mask, masks[9])
    two = [m if t in (9, 12) else np.zeros_like(m) for t, m in enumerate(masks)]
    with pytest.raises(InvalidMask, match="exactly one"):
        read_seg_annotation(write_seg(mr_volume, two, "a", "1", segmentation_type=kind).data, mr_volume)


def test_seg_refusals(mr_volume, mr) -> None:
    frames, masks = mr
    with pytest.raises(InvalidMask, match="no object"):
        write_seg(mr_volume, [np.zeros_like(m) for m in masks], "m", "1")
    with pytest.raises(InvalidMask, match="label frames"):
        write_seg(mr_volume, masks[:3], "m", "1")
    cine = read_dicom_series(us_cine(frames))
    with pytest.raises(InvalidInput, match="geometry"):
        write_seg(cine, masks, "m", "1")
    with pytest.raises(InvalidInput, match="seg_type must be binary"):
        write_seg(mr_volume, masks, "m", "1", segmentation_type="FRACTIONAL")


def test_nifti_labelmap_lands_on_the_input_grid_with_its_affine() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 900, size=(8, 10, 6)).astype(np.int16)
    affine = np.array([[0, -1.2, 0, 30], [0, 0, 0.9, -20], [-2.5, 0, 0, 12], [0, 0, 0, 1.0]])
    volume = read_nifti(nib.Nifti1Image(image, affine).to_bytes())
    truth = rng.integers(0, 4, size=image.shape).astype(np.int64)
    c = int(volume.nifti.ornt[volume.nifti.axis, 0])
    labels = _frames_of(apply_orientation(truth, volume.nifti.ornt), c)  # what the engine would return
    out = nib.Nifti1Image.from_bytes(gzip.decompress(write_labelmap(volume, labels)))
    assert np.array_equal(np.asanyarray(out.dataobj), truth)
    assert np.allclose(out.affine, affine) and out.header.get_intent()[0] == "label"
    assert out.header.get_zooms()[:3] == pytest.approx((2.5, 1.2, 0.9))


def test_nifti_labelmap_annotation_finds_its_one_slice() -> None:
    image = np.zeros((12, 11, 9), np.int16)
    volume = read_nifti(nib.Nifti1Image(image, np.eye(4)).to_bytes())
    labels = np.zeros(image.shape, np.uint8)
    labels[2:5, 3:8, 4] = 1
    labels[6:9, 3:8, 4] = 2
    annotation = load_annotation(nib.Nifti1Image(labels, np.eye(4)).to_bytes(), volume)
    assert annotation.frame == 4 and set(np.unique(annotation.mask)) == {0, 1, 2}
    assert np.array_equal(annotation.mask, labels[:, :, 4].T[::-1, ::-1])
    labels[0, 0, 7] = 1
    with pytest.raises(InvalidMask, match="2 slices"):
        load_annotation(nib.Nifti1Image(labels, np.eye(4)).to_bytes(), volume)
    with pytest.raises(InvalidMask, match="no labels"):
        load_annotation(nib.Nifti1Image(np.zeros_like(labels), np.eye(4)).to_bytes(), volume)
    with pytest.raises(InvalidMask, match="grid"):
        load_annotation(nib.Nifti1Image(labels[:5], np.eye(4)).to_bytes(), volume)


def test_rle_is_column_major_coco() -> None:
    m = np.zeros((3, 4), bool)
    m[0, 0] = m[1, 0] = m[2, 2] = True
    assert encode_rle(m) == {"size": [3, 4], "counts": [0, 2, 6, 1, 3]}
    assert encode_rle(~np.ones((2, 2), bool))["counts"] == [4]
    with pytest.raises(InvalidMask, match="add up"):
        decode_rle({"size": [3, 4], "counts": [1, 2]})


def test_coco_round_trip_per_frame_and_object(mr) -> None:
    _, masks = mr
    doc = json.loads(coco_json(masks, {1: "anterior", 2: "posterior"}))
    assert [c["name"] for c in doc["categories"]] == ["anterior", "posterior"]
    assert all(a["iscrowd"] == 1 and a["area"] > 0 for a in doc["annotations"])
    assert len(doc["annotations"]) == sum(len(np.unique(m)) - 1 for m in masks)
    decoded = labels_from_coco(json.dumps(doc).encode())
    assert all(np.array_equal(a, b) for a, b in zip(decoded, masks))
    first = next(a for a in doc["annotations"])
    rows, cols = np.nonzero(decode_rle(first["segmentation"]))
    assert first["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
    assert coco_document(masks)["categories"][0]["name"] == "Object 1"


def test_previews_are_valid_images(mr) -> None:
    frames, masks = mr
    gif = Image.open(io.BytesIO(overlay_gif(frames, masks, fps=12)))
    assert gif.format == "GIF" and gif.n_frames == len(frames)
    sheet = Image.open(io.BytesIO(contact_sheet(frames, masks, columns=4)))
    sheet.load()
    assert sheet.format == "PNG" and sheet.height == 3 * (256 + 16)  # 12 picked frames, 4 columns, captions
    video = read_video(overlay_mp4(frames, masks, fps=12))
    assert len(video) == len(frames) and video.frames[0].ndim == 3  # coloured overlay survives
    with pytest.raises(InvalidInput):
        contact_sheet(frames, masks, indices=[len(frames)])


def test_npy_results_use_the_smallest_type_that_holds_the_labels() -> None:
    from service.io.outputs import encode_results

    small = [np.array([[0, 1], [2, 255]], np.int64)] * 3
    got = np.load(io.BytesIO(encode_results("npy", small).data))
    assert got.dtype == np.uint8 and got.shape == (3, 2, 2) and np.array_equal(got[1], small[0])
    wide = [np.array([[0, 300]], np.int64)]
    got = np.load(io.BytesIO(encode_results("npy", wide).data))
    assert got.dtype == np.uint16 and got.tolist() == [[[0, 300]]]
    with pytest.raises(InvalidInput, match="0..65535"):
        encode_results("npy", [np.array([[-1]], np.int64)])


def test_the_contact_sheet_always_shows_and_marks_the_annotated_frame(mr) -> None:
    frames, masks = mr
    picked = select_frames(masks)
    skipped = next(t for t in range(len(frames)) if t not in picked)  # a frame the even spread leaves out
    plain = Image.open(io.BytesIO(contact_sheet(frames, masks, columns=4))).convert("RGB")
    marked = Image.open(io.BytesIO(contact_sheet(frames, masks, columns=4, annotated=skipped))).convert("RGB")
    n = len(picked) + 1
    assert marked.height == -(-n // 4) * (256 + 16)  # one tile more: the annotated frame is in
    yellow = np.all(np.asarray(marked) == (255, 220, 0), axis=-1).sum()
    assert yellow > 3 * 256 and np.all(np.asarray(plain) == (255, 220, 0), axis=-1).sum() == 0


def test_plain_text_logs_carry_the_extra_fields() -> None:
    import logging

    from service.logs import PlainFormatter

    record = logging.makeLogRecord({"msg": "request", "levelname": "INFO", "name": "imos.rest",
                                    "route": "/v1/segment", "status": 200, "request_id": "abc"})
    line = PlainFormatter().format(record)
    assert "request route=/v1/segment status=200 request_id=abc" in line
