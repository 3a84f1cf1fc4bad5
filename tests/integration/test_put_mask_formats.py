"""PUT /v1/sessions/{id}/masks/{k} takes every documented annotation format: an index PNG / .npy, and a NIfTI
labelmap read against the session's own NIfTI geometry (the frame it marks must be k); bad uploads get a
message without internals."""

from __future__ import annotations

import asyncio

import nibabel as nib
import numpy as np

from service.io.medical.detect import load_annotation, load_volume
from service.settings import Settings
from tests.integration.rest_harness import npy_bytes, rest_client


def _nifti(values: np.ndarray) -> bytes:
    return bytes(nib.Nifti1Image(values, np.diag([0.8, 0.8, 2.0, 1.0])).to_bytes())


def test_put_mask_takes_a_nifti_labelmap_of_the_session_volume(embedded_settings: Settings) -> None:
    rng = np.random.default_rng(0)
    volume = _nifti(rng.integers(0, 400, size=(32, 32, 6)).astype(np.int16))
    labels = np.zeros((32, 32, 6), np.int16)
    labels[8:20, 10:22, 2] = 1
    labelmap = _nifti(labels)
    expected = load_annotation(labelmap, load_volume(volume, "v.nii"), "l.nii")
    assert expected.frame is not None

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            sid = (await client.post("/v1/sessions", files={"sequence": ("v.nii", volume)})).json()["id"]
            r = await client.put(f"/v1/sessions/{sid}/masks/{expected.frame}", files={"mask": ("l.nii", labelmap)})
            assert r.status_code == 200 and r.json()["objects"] == [1], r.text
            other = (expected.frame + 1) % 6
            r = await client.put(f"/v1/sessions/{sid}/masks/{other}", files={"mask": ("l.nii", labelmap)})
            assert r.status_code == 400 and f"marks frame {expected.frame}" in r.json()["detail"]
            r = await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.png", b"\x89PNG\r\n\x1a\n junk")})
            assert r.status_code == 400 and "BytesIO" not in r.text and "0x" not in r.json()["detail"]
            plain = np.zeros((32, 32), np.uint8)
            plain[2:6, 2:6] = 2
            r = await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(plain))})
            assert r.status_code == 200 and r.json()["objects"] == [2]

    asyncio.run(scenario())
