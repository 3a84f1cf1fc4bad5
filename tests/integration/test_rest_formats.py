"""REST one-shot with medical formats: DICOM zip -> SEG, NIfTI -> NIfTI, and a clear 400 for a mismatch."""

from __future__ import annotations

import asyncio
import io
import zipfile

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from service.settings import Settings
from tests.integration.rest_harness import npy_bytes, rest_client
from tests.medical_builders import DATA_DEV, ct_series, dev_sequence

SEQ = "deeplesion__000001_02_01_008-023"

CLASSIC_SEG = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage, BINARY: the default


@pytest.fixture()
def lesion() -> tuple[list[np.ndarray], list[np.ndarray], int]:
    if not (DATA_DEV / "JPEGImages" / SEQ).is_dir():
        pytest.skip("../shared/data/dev is not present")
    frames, masks = dev_sequence(SEQ)
    k = int(np.argmax([m.sum() for m in masks[:6]]))
    return frames[:6], masks[:6], k


def test_dicom_zip_to_seg_and_nifti_to_nifti(lesion, embedded_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    frames, masks, k = lesion
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, data in enumerate(ct_series(frames)):
            zf.writestr(f"s/{i}.dcm", data)
    vol = np.stack(frames, -1).astype(np.int16)
    affine = np.diag([0.7, 0.7, 5.0, 1.0])
    nii, ann = io.BytesIO(), np.zeros(vol.shape, np.uint8)
    ann[..., k] = masks[k]
    nii.write(nib.Nifti1Image(vol, affine).to_bytes())
    ann_bytes = nib.Nifti1Image(ann, affine).to_bytes()

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            r = await client.post("/v1/segment", files={"sequence": ("ct.zip", buf.getvalue()),
                                                        "mask": ("m.npy", npy_bytes(masks[k].astype(np.uint8)))},
                                  data={"frame": str(k), "output": "seg", "labels": '{"1": "Lesion"}'})
            assert r.status_code == 200, r.text
            seg = hd.seg.segread(io.BytesIO(r.content))
            assert {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}[1] == "Lesion"
            assert str(seg.SOPClassUID) == CLASSIC_SEG and seg.SegmentationType == "BINARY"  # the default
            r = await client.post("/v1/segment", files={"sequence": ("ct.zip", buf.getvalue()),
                                                        "mask": ("m.npy", npy_bytes(masks[k].astype(np.uint8)))},
                                  data={"frame": str(k), "output": "seg", "seg_type": "labelmap"})
            assert r.status_code == 200 and hd.seg.segread(io.BytesIO(r.content)).SegmentationType == "LABELMAP"
            parts = [("sequence", (f"{i}.dcm", d)) for i, d in enumerate(ct_series(frames))]
            r = await client.post("/v1/segment", files=[*parts, ("mask", ("m.npy", npy_bytes(masks[k].astype(np.uint8))))],
                                  data={"frame": str(k), "output": "npy"})
            assert r.status_code == 200, r.text  # one multipart part per DICOM instance
            assert np.load(io.BytesIO(r.content)).shape == (6, *masks[k].shape)
            r = await client.post("/v1/segment", files={"sequence": ("ct.nii", nii.getvalue()),
                                                        "mask": ("ann.nii", ann_bytes)}, data={"output": "nifti"})
            assert r.status_code == 200, r.text
            out = nib.Nifti1Image.from_bytes(__import__("gzip").decompress(r.content))
            assert out.shape == vol.shape and np.allclose(out.affine, affine)
            assert np.array_equal(np.asarray(out.dataobj)[..., k] > 0, masks[k] > 0)
            r = await client.post("/v1/segment", files={"sequence": ("ct.nii", nii.getvalue()),
                                                        "mask": ("m.npy", npy_bytes(np.ones((3, 3), np.uint8)))},
                                  data={"frame": "0"})
            assert r.status_code == 400 and "matches no frame" in r.json()["detail"]
            r = await client.post("/v1/segment", files={"sequence": ("ct.nii", nii.getvalue()),
                                                        "mask": ("ann.nii", ann_bytes)}, data={"output": "seg"})
            assert r.status_code == 400 and "DICOM SEG output needs a DICOM input" in r.json()["detail"]

    asyncio.run(scenario())


def test_sessions_keep_geometry_for_seg_and_nifti(lesion, embedded_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    frames, masks, k = lesion
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, data in enumerate(ct_series(frames)):
            zf.writestr(f"s/{i}.dcm", data)

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            sid = (await client.post("/v1/sessions", files={"sequence": ("ct.zip", buf.getvalue())},
                                     data={"labels": '{"1": "Lesion"}'})).json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/{k}", files={"mask": ("m.npy", npy_bytes(masks[k].astype(np.uint8)))})
            await client.post(f"/v1/sessions/{sid}/propagate")
            _ = (await client.get(f"/v1/sessions/{sid}/events")).text
            r = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "seg"})
            assert r.status_code == 200, r.text
            seg = hd.seg.segread(io.BytesIO(r.content))
            assert {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}[1] == "Lesion"
            assert str(seg.SOPClassUID) == CLASSIC_SEG
            r = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "seg", "seg_type": "labelmap"})
            assert hd.seg.segread(io.BytesIO(r.content)).SegmentationType == "LABELMAP"
            r = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "seg", "seg_type": "fractional"})
            assert r.status_code == 422
            r = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "nifti"})
            assert r.status_code == 400 and "NIfTI" in r.json()["detail"]

    asyncio.run(scenario())
