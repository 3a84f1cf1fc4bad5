"""Unknown form fields are refused by name (a typo must not be ignored with a 201); masks before a run are a
409 and results say whether they are complete."""

from __future__ import annotations

import asyncio

import numpy as np

from service.settings import Settings
from tests.integration.rest_harness import npy_bytes, rest_client


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((32, 32), np.uint8)
    mask[4:12, 4:12] = 1
    return np.zeros((3, 32, 32), np.uint8), mask


def test_unknown_form_fields_are_400s_naming_them(embedded_settings: Settings) -> None:
    frames, mask = _inputs()

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, rt):
            seq = {"sequence": ("f.npy", npy_bytes(frames))}
            r = await client.post("/v1/sessions", files=seq, data={"setings": "{}"})
            assert r.status_code == 400 and "'setings'" in r.json()["detail"] and "settings" in r.json()["detail"]
            assert await rt.store.smembers(rt.records.active) == set()
            r = await client.post("/v1/segment", files={**seq, "mask": ("m.npy", npy_bytes(mask))},
                                  data={"frame": "0", "format": "npy"})
            assert r.status_code == 400 and "'format'" in r.json()["detail"] and "output" in r.json()["detail"]
            r = await client.post("/v1/sessions", files=seq, data={"window": "soft-tissue"})
            assert r.status_code == 201, r.text  # the known fields still work
            sid = r.json()["id"]
            r = await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(mask))},
                                 data={"frame": "0"})
            assert r.status_code == 400 and "'frame'" in r.json()["detail"]

    asyncio.run(scenario())


def test_masks_before_a_run_are_a_409_and_results_say_how_complete_they_are(embedded_settings: Settings) -> None:
    frames, mask = _inputs()

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(frames))})).json()["id"]
            r = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"})
            assert r.status_code == 409 and "no propagation has run" in r.json()["detail"]
            await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(mask))})
            await client.post(f"/v1/sessions/{sid}/propagate")
            await client.get(f"/v1/sessions/{sid}/events")  # until done
            r = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"})
            assert r.status_code == 200 and r.headers["x-run-state"] == "done"
            assert r.headers["x-frames-done"] == r.headers["x-frames"] == "3"

    asyncio.run(scenario())
