"""A lossy (JPEG) mask is refused with a message that names the cause, on every path masks take: the
decoder, the annotation reader of the medical inputs, and the REST session and one-shot routes."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidMask
from service.io.images import decode_mask
from service.io.medical.detect import load_annotation
from service.settings import Settings
from tests.integration.rest_harness import npy_bytes, rest_client


def _jpeg(quality: int) -> bytes:
    mask = np.zeros((48, 48), np.uint8)
    mask[10:30, 12:34] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.parametrize("quality", [95, 90, 75])
def test_jpeg_masks_are_refused_naming_the_cause(quality: int) -> None:
    for read in (lambda d: decode_mask(d, "m.jpg"), lambda d: load_annotation(d, None, "m.jpg")):
        with pytest.raises(InvalidMask, match="JPEG image: lossy compression"):
            read(_jpeg(quality))


def test_rest_refuses_a_jpeg_mask_with_400(embedded_settings: Settings) -> None:
    frames = np.zeros((4, 48, 48), np.uint8)

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(frames))})).json()["id"]
            r = await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.jpg", _jpeg(95))})
            assert r.status_code == 400 and "lossy" in r.json()["detail"], r.text
            r = await client.post("/v1/segment", files={"sequence": ("f.npy", npy_bytes(frames)),
                                                        "mask": ("m.jpg", _jpeg(90))}, data={"frame": "0"})
            assert r.status_code == 400 and "lossy" in r.json()["detail"] and "16" not in r.json()["detail"]

    asyncio.run(scenario())
