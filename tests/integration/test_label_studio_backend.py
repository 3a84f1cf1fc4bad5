"""The Label Studio ML backend routes in-process (real ASGI app and worker), its media fetched from a real
loopback HTTP server that, like Label Studio, serves uploads only with the project's token."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from PIL import Image

from service.integrations.label_studio import rle
from service.settings import Settings
from tests.conftest import moving_sequence
from tests.integration.rest_harness import rest_client

TOKEN = "ls-token-123"
CONFIG = """<View><Image name="image" valueList="$images"/>
<BrushLabels name="tag" toName="image"><Label value="A"/><Label value="B"/></BrushLabels></View>"""
BASE = "/integrations/label-studio"


@pytest.fixture(scope="module")
def media() -> Iterator[tuple[str, list[np.ndarray], np.ndarray]]:
    """A loopback server with pages /data/upload/1/pNN.png (Token auth) of a moving two-object sequence."""
    frames, mask = moving_sequence(6, 48, 2)
    files = {}
    for t, f in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="PNG")
        files[f"/data/upload/1/p{t:02d}.png"] = buf.getvalue()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = files.get(self.path)
            code = 401 if self.headers.get("Authorization") != f"Token {TOKEN}" else (200 if body else 404)
            self.send_response(code)
            self.end_headers()
            if code == 200 and body:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", frames, mask
    finally:
        server.shutdown()


def _task(n: int, mask: np.ndarray, page: int, tid: int = 7) -> dict[str, Any]:
    drawn = [{"id": f"r{k}", "to_name": "image", "from_name": "tag", "type": "brushlabels", "item_index": page,
              "value": {"format": "rle", "rle": rle.encode(mask == k), "brushlabels": [name]}}
             for k, name in ((1, "A"), (2, "B"))]
    return {"id": tid, "data": {"images": [f"/data/upload/1/p{t:02d}.png" for t in range(n)]},
            "annotations": [{"result": drawn, "was_cancelled": False, "updated_at": "2026-12-01T00:00:00"}]}


def _pages(results: list[dict[str, Any]], n: int, shape: tuple[int, int]) -> list[np.ndarray]:
    out = [np.zeros(shape, np.uint8) for _ in range(n)]
    for r in results:
        out[r["item_index"]][rle.decode(r["value"]["rle"], *shape)] = {"A": 1, "B": 2}[r["value"]["brushlabels"][0]]
    return out


def test_setup_then_batch_predict_fetches_with_the_token(embedded_settings: Settings,
                                                           media: tuple[str, list[np.ndarray], np.ndarray]) -> None:
    host, frames, mask = media

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, rt):
            assert (await client.get(f"{BASE}/health")).json()["status"] == "UP"
            r = await client.post(f"{BASE}/setup", json={"project": "3.17", "schema": CONFIG, "hostname": host,
                                                         "access_token": TOKEN})
            assert r.status_code == 200 and r.json() == {"model_version": "tiny:1"}
            body = {"tasks": [_task(6, mask, 0), {"id": 8, "data": {"images": []}}], "project": "3.17",
                    "label_config": CONFIG, "params": {"context": None}}
            r = await client.post(f"{BASE}/predict", json=body)
            assert r.status_code == 200, r.text
            first, empty = r.json()["results"]
            assert empty == {"result": [], "score": 0.0, "model_version": "tiny:1"}
            assert first["model_version"] == "tiny:1" and first["score"] == 1.0
            pages = _pages(first["result"], 6, mask.shape)
            assert np.array_equal(pages[0], mask)  # the drawn page comes back as drawn
            expected = [r.labels() for r in rt.engine.propagator().run(frames, mask, 0, "both")]
            for got, want in zip(pages, expected, strict=True):
                np.testing.assert_array_equal(got, want)
            again = (await client.post(f"{BASE}/predict", json=body)).json()["results"][0]
            assert again == first
            assert await client.post(f"{BASE}/webhook", json={"action": "ANNOTATION_CREATED"}) is not None

    asyncio.run(scenario())


def test_a_run_longer_than_the_budget_answers_partially_then_completes(
        embedded_settings: Settings, media: tuple[str, list[np.ndarray], np.ndarray]) -> None:
    host, frames, mask = media
    settings = embedded_settings.model_copy(update={"label_studio_predict_budget_s": 0.0,
                                                    "label_studio_url": host, "label_studio_api_key": TOKEN})

    async def scenario() -> None:
        async with rest_client(settings) as (client, rt):
            body = {"tasks": [_task(6, mask, 3, tid=9)], "project": "4.1", "label_config": CONFIG,
                    "params": {"context": {"result": _task(6, mask, 3)["annotations"][0]["result"]}}}
            partial = (await client.post(f"{BASE}/predict", json=body)).json()["results"][0]
            assert partial["model_version"].startswith("tiny:1 partial ") and partial["score"] < 1.0
            sessions = await rt.store.smembers(f"{settings.key_prefix}:active")
            for _ in range(200):
                done = (await client.post(f"{BASE}/predict", json=body)).json()["results"][0]
                if done["score"] == 1.0:
                    break
                await asyncio.sleep(0.05)
            assert done["model_version"] == "tiny:1" and len({r["item_index"] for r in done["result"]}) == 6
            assert await rt.store.smembers(f"{settings.key_prefix}:active") <= sessions  # no second run began

    asyncio.run(scenario())


@pytest.mark.parametrize("token, host, message", [
    ("wrong", True, "HTTP 401"),
    (TOKEN, False, "IMOS_LABEL_STUDIO_URL"),
])
def test_media_that_cannot_be_fetched_is_a_clear_400(embedded_settings: Settings,
                                                    media: tuple[str, list[np.ndarray], np.ndarray],
                                                    token: str, host: bool, message: str) -> None:
    url, _, mask = media

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            await client.post(f"{BASE}/setup", json={"project": "5.1", "hostname": url if host else "",
                                                     "access_token": token})
            body = {"tasks": [_task(6, mask, 0)], "project": "5.1", "label_config": CONFIG}
            r = await client.post(f"{BASE}/predict", json=body)
            assert r.status_code == 400 and message in r.json()["detail"]
            assert TOKEN not in r.text

    asyncio.run(scenario())


def test_bad_requests_and_keys(embedded_settings: Settings) -> None:
    key = "secret-key"
    settings = embedded_settings.model_copy(update={"api_keys": f"team:{hashlib.sha256(key.encode()).hexdigest()}"})

    async def scenario() -> None:
        async with rest_client(settings) as (client, _):
            basic = {"Authorization": "Basic " + base64.b64encode(f"ls:{key}".encode()).decode()}
            assert (await client.post(f"{BASE}/setup", json={})).status_code == 401
            assert (await client.post(f"{BASE}/setup", json={}, headers=basic)).status_code == 200
            r = await client.post(f"{BASE}/predict", content=b"[1, 2]", headers=basic)
            assert r.status_code == 400 and "JSON object" in r.json()["detail"]
            r = await client.post(f"{BASE}/predict", json={"tasks": [{"id": 1}], "label_config": "<View/>"},
                                  headers=basic)
            assert r.status_code == 400 and "no control" in r.json()["detail"]

    asyncio.run(scenario())
