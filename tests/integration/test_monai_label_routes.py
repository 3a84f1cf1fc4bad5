"""The MONAI Label routes in-process (real ASGI app and worker, tiny model) with API keys on: the login flow
the Slicer module runs, tenants kept apart, the session path, and an infer answered as the client parses it."""

from __future__ import annotations

import asyncio
import io
import json
from email.message import Message

import httpx
import nibabel as nib
import numpy as np
from monailabel.client.client import MONAILabelUtils

from service.auth import key_hash
from service.settings import Settings
from tests.conftest import moving_sequence
from tests.integration.rest_harness import rest_client

KEY_A, KEY_B = "alpha-monai-key", "bravo-monai-key"
BASE = "/integrations/monai-label"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _nifti(volume: np.ndarray) -> bytes:
    """Frames [T, H, W] (radiological view) -> .nii bytes on an RAS grid (the reader's frame = slab.T[::-1, ::-1])."""
    data = np.stack([f[::-1, ::-1].T for f in volume], axis=2)
    return nib.Nifti1Image(data.astype(np.int16), np.diag([0.7, 0.7, 2.0, 1.0])).to_bytes()


def _label(n: int, k: int, mask: np.ndarray) -> bytes:
    frames = np.zeros((n, *mask.shape), np.uint8)
    frames[k] = mask
    return _nifti(frames)


def _parts(response: httpx.Response) -> tuple[dict[str, object], dict[str, bytes]]:
    headers = Message()
    headers["content-type"] = response.headers["content-type"]
    headers["content-length"] = str(len(response.content))
    form, files = MONAILabelUtils.parse_multipart(io.BytesIO(response.content), headers)
    return json.loads(form["params"]), files


async def _login(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{BASE}/auth/")).json()["enabled"] is True
    refused = await client.post(f"{BASE}/auth/token", data={"username": "slicer", "password": "wrong",
                                                             "grant_type": "password"})
    assert refused.status_code == 401
    token = (await client.post(f"{BASE}/auth/token", data={"username": "slicer", "password": KEY_A,
                                                            "grant_type": "password"})).json()
    assert token == {"access_token": KEY_A, "token_type": "Bearer"}
    assert (await client.get(f"{BASE}/auth/token/valid", headers=_bearer(KEY_A))).status_code == 200
    assert (await client.get(f"{BASE}/auth/token/valid")).status_code == 401
    assert (await client.get(f"{BASE}/info/")).status_code == 401
    assert (await client.get(f"{BASE}/train/", params={"check_if_running": "true"},
                             headers=_bearer(KEY_A))).status_code == 404


def test_login_tenants_sessions_and_infer(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(update={"api_keys": f"alpha:{key_hash(KEY_A)},bravo:{key_hash(KEY_B)}",
                                                    "monai_label_labels": "kidney"})
    frames, mask = moving_sequence(6, 32, 2)
    volume, label = _nifti(np.stack([f.mean(-1) for f in frames])), _label(6, 2, mask)

    async def scenario() -> None:
        async with rest_client(settings) as (client, _):
            await _login(client)
            info = (await client.get(f"{BASE}/info/", headers=_bearer(KEY_A))).json()
            assert info["labels"] == ["kidney"]
            up = await client.put(f"{BASE}/datastore/", params={"image": "case 1"}, headers=_bearer(KEY_A),
                                  files={"file": ("/tmp/x/case.nii", volume)}, data={"params": "{}"})
            assert up.status_code == 200 and up.json() == {"image": "case 1"}
            files = {"label": ("label.nii", label)}
            other = await client.post(f"{BASE}/infer/imos", params={"image": "case 1"}, headers=_bearer(KEY_B),
                                      files=files, data={"params": "{}"})
            assert other.status_code == 404  # another tenant's image does not exist for this one
            answer = await client.post(f"{BASE}/infer/imos", params={"image": "case 1"}, headers=_bearer(KEY_A),
                                       files=files, data={"params": json.dumps({"result_extension": ".nrrd"})})
            assert answer.status_code == 200
            params, parts = _parts(answer)
            assert params["label_names"] == {"kidney": 1, "label 2": 2} and params["frames"] == 6
            [(name, data)] = parts.items()
            assert name.endswith(".nrrd") and "/" not in name and data.startswith(b"NRRD000")

            made = await client.put(f"{BASE}/session/", headers=_bearer(KEY_A), files={"files": ("v.nii", volume)},
                                    data={"client_id": "slicer"})
            sid = made.json()["session_id"]
            assert made.json()["session_info"]["annotated_frames"] == [2]  # same voxels, same session
            assert (await client.get(f"{BASE}/session/{sid}", headers=_bearer(KEY_B))).status_code == 404
            assert (await client.delete(f"{BASE}/session/{sid}", headers=_bearer(KEY_A))).status_code == 200
            assert (await client.get(f"{BASE}/session/{sid}", headers=_bearer(KEY_A))).status_code == 404
            not_multipart = await client.post(f"{BASE}/infer/imos", params={"image": "case 1"},
                                              headers=_bearer(KEY_A), json={})
            assert not_multipart.status_code == 400 and "multipart" in not_multipart.json()["detail"]

    asyncio.run(scenario())
