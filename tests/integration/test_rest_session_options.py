"""REST sessions read their input as the one-shot does: a CT window (preset or LEVEL,WIDTH) changes the
frames the model sees; a bad window is a 400."""

from __future__ import annotations

import asyncio
import io
import zipfile

import numpy as np

from service.settings import Settings
from tests.integration.rest_harness import rest_client
from tests.medical_builders import ct_series


def _zip(instances: list[bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, blob in enumerate(instances):
            zf.writestr(f"{i}.dcm", blob)
    return buf.getvalue()


def test_a_session_takes_the_ct_window(embedded_settings: Settings) -> None:
    frames = [np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1)) for _ in range(3)]
    series = _zip(ct_series(frames))

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, rt):
            seen = {}
            for window in (None, "bone", "40,80"):
                data = {"window": window} if window else {}
                r = await client.post("/v1/sessions", files={"sequence": ("ct.zip", series)}, data=data)
                assert r.status_code == 201, r.text
                seen[window] = await rt.records.frame(r.json()["id"], 0)
            assert not np.array_equal(seen[None], seen["bone"]) and not np.array_equal(seen["bone"], seen["40,80"])
            r = await client.post("/v1/sessions", files={"sequence": ("ct.zip", series)}, data={"window": "40,x"})
            assert r.status_code == 400 and "LEVEL,WIDTH" in r.json()["detail"]

    asyncio.run(scenario())
