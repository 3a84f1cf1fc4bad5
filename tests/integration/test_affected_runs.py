"""A correction propagated with scope "affected": only the frames the corrected annotation owns are
recomputed (from it alone, both ways), equal to the engine run on those frames; the others keep the first
run's masks; anything else (two changes, a run still going) is a whole run."""

from __future__ import annotations

import asyncio
import io

import numpy as np
from PIL import Image

from service.engine.loader import load_engine
from service.settings import Settings
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client


def _sequence() -> tuple[list[np.ndarray], list[np.ndarray]]:
    from service.bench.synthetic_video import moving_ellipses

    return moving_ellipses(12, 48, 48, 2)


async def _masks(client: object, sid: str, n: int) -> list[bytes]:
    return [(await client.get(f"/v1/sessions/{sid}/masks/{t}")).content for t in range(n)]  # type: ignore[attr-defined]


def test_a_correction_recomputes_only_the_frames_it_owns(embedded_settings: Settings) -> None:
    frames, masks = _sequence()
    n, k, j = 12, 2, 8

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})
                   ).json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/{k}", files={"mask": ("m.npy", npy_bytes(masks[k]))})
            first = (await client.post(f"/v1/sessions/{sid}/propagate", json={"scope": "affected"})).json()
            assert first["span"] is None  # no run before: the whole sequence
            events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
            await client.put(f"/v1/sessions/{sid}/masks/{j}", files={"mask": ("m.npy", npy_bytes(masks[j]))})
            run = (await client.post(f"/v1/sessions/{sid}/propagate", json={"scope": "affected"})).json()
            lo = (k + j) // 2 + 1
            assert run["anchors"] == [j] and run["span"] == [lo, n - 1]
            second = parse_sse((await client.get(f"/v1/sessions/{sid}/events",
                                                  params={"after": events[-1]["id"]})).text)
            published = sorted(e["frame"] for e in second if e["event"] == "frame")
            assert published == list(range(lo, n))
            assert second[-1]["event"] == "done" and second[-1]["total"] == n - lo
            status = (await client.get(f"/v1/sessions/{sid}")).json()
            assert status["state"] == "done" and status["progress"] == 1.0
            # two changes since the last run: a whole run again
            for t in (0, 11):
                await client.put(f"/v1/sessions/{sid}/masks/{t}", files={"mask": ("m.npy", npy_bytes(masks[t]))})
            whole = (await client.post(f"/v1/sessions/{sid}/propagate", json={"scope": "affected"})).json()
            assert whole["span"] is None and whole["anchors"] == [0, k, j, 11]
            bad = await client.post(f"/v1/sessions/{sid}/propagate", json={"scope": "some"})
            assert bad.status_code == 422
            named = await client.put(f"/v1/sessions/{sid}/labels", json={"1": "Liver", "2": "Cyst"})
            assert named.json() == {"labels": {"1": "Liver", "2": "Cyst"}}
            assert (await client.get(f"/v1/sessions/{sid}")).json()["labels"] == {"1": "Liver", "2": "Cyst"}
            refused = await client.put(f"/v1/sessions/{sid}/labels", json={"x": "Liver"})
            assert refused.status_code == 400 and "object numbers" in refused.json()["detail"]

    asyncio.run(scenario())


def test_affected_frames_equal_the_engine_on_them(embedded_settings: Settings, tiny_repo: object) -> None:
    frames, masks = _sequence()
    n, k, j = 12, 2, 8

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with rest_client(embedded_settings) as (client, rt):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})
                   ).json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/{k}", files={"mask": ("m.npy", npy_bytes(masks[k]))})
            await client.post(f"/v1/sessions/{sid}/propagate")
            await rt.sessions.wait_run(sid, "default")
            before = await _masks(client, sid, n)
            await client.put(f"/v1/sessions/{sid}/masks/{j}", files={"mask": ("m.npy", npy_bytes(masks[j]))})
            await client.post(f"/v1/sessions/{sid}/propagate", json={"scope": "affected"})
            await rt.sessions.wait_run(sid, "default")
            return before, await _masks(client, sid, n)

    before, after = asyncio.run(scenario())
    lo = (k + j) // 2 + 1
    assert after[:lo] == before[:lo]  # not recomputed: the first run's masks, byte for byte
    engine = load_engine(tiny_repo, "tiny")  # type: ignore[arg-type]
    local = {r.index + lo: r.labels() for r in engine.propagator().run(frames[lo:], masks[j], j - lo)}
    for t in range(lo, n):
        got = np.asarray(Image.open(io.BytesIO(after[t])))
        assert np.array_equal(got, local[t]), f"frame {t}"
