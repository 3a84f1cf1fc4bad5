"""The configured limits (IMOS_MAX_FRAMES, IMOS_MAX_FRAME_PIXELS) on every entry, lowered: REST sessions
(create from npy and NIfTI, append), the one-shot, gRPC CreateSession (frames and sequence_file) and Track.
Each refuses with 413 / RESOURCE_EXHAUSTED naming the limit, and nothing is stored."""

from __future__ import annotations

import asyncio

import grpc
import nibabel as nib
import numpy as np
import pytest

from service.settings import Settings
from tests.integration.grpc_harness import Served, grpc_served, png_bytes
from tests.integration.rest_harness import npy_bytes, rest_client


def _nifti(slices: int) -> bytes:
    img = nib.Nifti1Image(np.zeros((32, 32, slices), np.int16), np.eye(4))
    return bytes(img.to_bytes())


def _frames(n: int, side: int = 32) -> np.ndarray:
    return np.zeros((n, side, side), np.uint8)


@pytest.fixture()
def limited(embedded_settings: Settings) -> Settings:
    return embedded_settings.model_copy(update={"max_frames": 3, "max_frame_pixels": 40 * 40})


def test_rest_entries_refuse_over_the_limits(limited: Settings) -> None:
    async def scenario() -> None:
        async with rest_client(limited) as (client, rt):
            cases = {
                "npy frames": {"files": {"sequence": ("f.npy", npy_bytes(_frames(4)))}},
                "npy pixels": {"files": {"sequence": ("f.npy", npy_bytes(_frames(2, 48)))}},
                "nifti slices": {"files": {"sequence": ("v.nii", _nifti(5))}},
            }
            for name, kwargs in cases.items():
                r = await client.post("/v1/sessions", **kwargs)  # type: ignore[arg-type]
                assert r.status_code == 413 and r.json()["code"] == "too_large", (name, r.text)
            assert await rt.store.smembers(rt.records.active) == set()
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(_frames(2)))})).json()["id"]
            r = await client.post(f"/v1/sessions/{sid}/frames", files={"sequence": ("f.npy", npy_bytes(_frames(2)))})
            assert r.status_code == 413 and "limit of 3" in r.json()["detail"]
            assert (await client.get(f"/v1/sessions/{sid}")).json()["frames"] == 2  # nothing appended
            mask = np.zeros((32, 32), np.uint8)
            mask[4:9, 4:9] = 1
            r = await client.post("/v1/segment", files={"sequence": ("f.npy", npy_bytes(_frames(4))),
                                                        "mask": ("m.npy", npy_bytes(mask))}, data={"frame": "0"})
            assert r.status_code == 413

    asyncio.run(scenario())


def test_grpc_entries_refuse_over_the_limits(limited: Settings) -> None:
    async def scenario(s: Served) -> None:
        pb2 = s.pb2
        over = [pb2.Image(encoded=png_bytes(f)) for f in _frames(4)]
        for request in (pb2.CreateSessionRequest(frames=over),
                        pb2.CreateSessionRequest(sequence_file=_nifti(5), sequence_filename="v.nii"),
                        pb2.CreateSessionRequest(sequence_file=npy_bytes(_frames(2, 48)), sequence_filename="f.npy")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await s.stub.CreateSession(request)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        assert await s.rt.store.smembers(s.rt.records.active) == set()

    async def run() -> None:
        async with grpc_served(limited) as s:
            await asyncio.wait_for(scenario(s), 60)

    asyncio.run(run())
