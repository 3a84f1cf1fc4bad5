"""REST sessions, one-shot segmentation and error mapping, with the real worker in-process."""

from __future__ import annotations

import asyncio
import io
import zipfile

import numpy as np
from PIL import Image

from service.settings import Settings
from tests.conftest import moving_sequence
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_session_lifecycle_with_sse_and_correction(embedded_settings: Settings) -> None:
    frames, masks = _sequence()

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            r = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))},
                                  data={"settings": '{"top_k": 10}', "labels": '{"1": "left", "2": "right"}'})
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            assert r.json()["frames"] == 10
            r = await client.put(f"/v1/sessions/{sid}/masks/4", files={"mask": ("m.png", _png(masks[4]))})
            assert r.status_code == 200 and r.json()["objects"] == [1, 2]
            r = await client.post(f"/v1/sessions/{sid}/propagate", json={"direction": "both"})
            assert r.status_code == 202 and r.json()["id"] == 1
            events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
            frame_events = [e for e in events if e["event"] == "frame"]
            assert sorted(e["frame"] for e in frame_events) == list(range(10))  # every frame exactly once
            assert {e["direction"] for e in frame_events} == {"forward", "backward"}
            assert events[-1]["event"] == "done" and events[-1]["published"] == 10
            status = (await client.get(f"/v1/sessions/{sid}")).json()
            assert status["state"] == "done" and status["frames_done"] == 10 and status["progress"] == 1.0
            one = np.asarray(Image.open(io.BytesIO((await client.get(f"/v1/sessions/{sid}/masks/4")).content)))
            assert np.array_equal(one, masks[4])
            # correction on frame 8, then re-propagate: a second run over both annotations
            r = await client.put(f"/v1/sessions/{sid}/masks/8", files={"mask": ("m.npy", npy_bytes(masks[8]))})
            assert r.status_code == 200
            assert (await client.post(f"/v1/sessions/{sid}/propagate")).json()["anchors"] == [4, 8]
            after = events[-1]["id"]
            second = parse_sse((await client.get(f"/v1/sessions/{sid}/events", params={"after": after})).text)
            assert {e["run"] for e in second} == {2}
            assert sorted(e["frame"] for e in second if e["event"] == "frame") == list(range(10))
            npy = np.load(io.BytesIO((await client.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"})).content))
            assert npy.shape == (10, 48, 48) and np.array_equal(npy[8], masks[8])
            zipped = zipfile.ZipFile(io.BytesIO((await client.get(f"/v1/sessions/{sid}/masks")).content))
            assert zipped.namelist() == [f"{i:05d}.png" for i in range(10)]
            assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 204
            assert (await client.get(f"/v1/sessions/{sid}")).status_code == 404

    asyncio.run(scenario())


def _sequence() -> tuple[list[np.ndarray], list[np.ndarray]]:
    from service.bench.synthetic_video import moving_ellipses

    return moving_ellipses(10, 48, 48, 2)


def test_one_shot_segment_png_zip_and_npy(embedded_settings: Settings) -> None:
    frames, masks = _sequence()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, f in enumerate(frames):
            zf.writestr(f"frame_{i:03d}.png", _png(f))

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, rt):
            r = await client.post("/v1/segment", files={"sequence": ("s.zip", buf.getvalue()),
                                                        "mask": ("m.png", _png(masks[5]))},
                                  data={"frame": "5", "direction": "both"})
            assert r.status_code == 200, r.text
            names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
            assert len(names) == 10
            r = await client.post("/v1/segment", files={"sequence": ("s.npy", npy_bytes(np.stack(frames))),
                                                        "mask": ("m.npy", npy_bytes(masks[0]))},
                                  data={"frame": "0", "direction": "forward", "output": "npy"})
            out = np.load(io.BytesIO(r.content))
            assert out.shape == (10, 48, 48) and np.array_equal(out[0], masks[0])
            assert await rt.store.smembers(rt.sessions.records.active) == set()  # both sessions deleted

    asyncio.run(scenario())


def test_bad_input_is_4xx_naming_the_problem(embedded_settings: Settings) -> None:
    frames, masks = moving_sequence(4, 48, 1)
    small = embedded_settings.model_copy(update={"max_request_bytes": 200_000})

    async def scenario() -> None:
        async with rest_client(small) as (client, _):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})).json()["id"]
            r = await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(masks[:20]))})
            assert r.status_code == 400 and "mask is 20x48 but the frames are 48x48" in r.json()["detail"]
            r = await client.put(f"/v1/sessions/{sid}/masks/9", files={"mask": ("m.npy", npy_bytes(masks))})
            assert r.status_code == 400 and "frame 9 is outside" in r.json()["detail"]
            r = await client.post(f"/v1/sessions/{sid}/propagate")
            assert r.status_code == 409 and "no annotated frame" in r.json()["detail"]
            assert (await client.get("/v1/sessions/nope")).status_code == 404
            r = await client.post("/v1/sessions", files={"sequence": ("x.png", b"\x89PNG garbage")})
            assert r.status_code == 400 and "x.png" in r.json()["detail"]
            r = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))},
                                  data={"settings": '{"topk": 3}'})
            assert r.status_code == 400 and "unknown setting 'topk'" in r.json()["detail"]
            for bad, says in (('{"flow_weight": 1.5}', "flow_weight must be between"),
                              ('{"size_rule": "big:416"}', "size_rule entry 'big:416'")):
                r = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))},
                                      data={"settings": bad})
                assert r.status_code == 400 and says in r.json()["detail"], r.text
            big = np.zeros((4, 200, 300), np.uint8)
            r = await client.post("/v1/sessions", files={"sequence": ("big.npy", npy_bytes(big))})
            assert r.status_code == 413
            r = await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(np.zeros((48, 48), np.uint8)))})
            assert r.status_code == 400 and "empty" in r.json()["detail"]

    asyncio.run(scenario())


def test_models_health_ready_metrics(embedded_settings: Settings) -> None:
    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            models = (await client.get("/v1/models")).json()["models"]
            assert models[0]["name"] == "tiny" and models[0]["trained"] is False
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["ready"] is True
            text = (await client.get("/metrics")).text
            assert 'imos_requests_total{code="200",route="/healthz",transport="rest"}' in text
            assert "imos_queue_depth_jobs" in text
            assert (await client.get("/openapi.json")).json()["info"]["title"] == "iMOS Serve"

    asyncio.run(scenario())


def test_state_over_the_limit_is_a_clear_error(embedded_settings: Settings) -> None:
    frames, masks = _sequence()
    small = embedded_settings.model_copy(update={"max_state_bytes": 2000})

    async def scenario() -> None:
        async with rest_client(small) as (client, _):
            r = await client.post("/v1/segment", files={"sequence": ("s.npy", npy_bytes(np.stack(frames))),
                                                        "mask": ("m.npy", npy_bytes(masks[0]))}, data={"frame": "0"})
            assert r.status_code == 413 and "IMOS_MAX_STATE_BYTES" in r.json()["detail"]

    asyncio.run(scenario())


def test_fp16_checkpoints_halve_the_state_and_keep_the_masks(embedded_settings: Settings) -> None:
    """IMOS_STATE_FP16: the stored memory state is about half the bytes; masks of an uninterrupted
    run are unchanged (only a resumed pass would see the rounding)."""
    frames, masks = _sequence()

    async def run(settings: Settings) -> tuple[int, bytes]:
        async with rest_client(settings) as (client, rt):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})).json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/0", files={"mask": ("m.npy", npy_bytes(masks[0]))})
            assert (await client.post(f"/v1/sessions/{sid}/propagate", json={"direction": "forward"})).status_code == 202
            events = parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
            assert events[-1]["event"] == "done"
            raw = await rt.records.store.hget(rt.records.key(sid, "state"), "forward")
            assert raw is not None
            result = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"})
            return len(raw), result.content

    full, masks32 = asyncio.run(run(embedded_settings))
    half, masks16 = asyncio.run(run(embedded_settings.model_copy(update={"state_fp16": True})))
    assert half < 0.62 * full  # the tensors halve; the JSON header (settings, geometry) does not
    assert masks16 == masks32


def test_live_stream_over_rest_matches_a_batch_session(embedded_settings: Settings) -> None:
    """create(stream) with frames 0..4, the mask on 4 (the run starts), the rest in two appends, close:
    the masks equal a batch session's, and closing twice or propagating a stream is refused."""
    frames, masks = _sequence()

    async def masks_of(client: object, sid: str) -> np.ndarray:
        r = await client.get(f"/v1/sessions/{sid}/masks", params={"format": "npy"})  # type: ignore[attr-defined]
        return np.load(io.BytesIO(r.content))

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            sid = (await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))})).json()["id"]
            await client.put(f"/v1/sessions/{sid}/masks/4", files={"mask": ("m.npy", npy_bytes(masks[4]))})
            await client.post(f"/v1/sessions/{sid}/propagate", json={"direction": "both"})
            parse_sse((await client.get(f"/v1/sessions/{sid}/events")).text)
            batch = await masks_of(client, sid)
            r = await client.post(f"/v1/sessions/{sid}/close")
            assert r.status_code == 409 and "not a live stream" in r.json()["detail"]

            r = await client.post("/v1/sessions", files={"sequence": ("f.npy", npy_bytes(np.stack(frames[:5])))},
                                  data={"stream": "true"})
            assert r.status_code == 201 and r.json() == {"id": r.json()["id"], "frames": 5, "stream": True}
            live = r.json()["id"]
            r = await client.put(f"/v1/sessions/{live}/masks/4", files={"mask": ("m.npy", npy_bytes(masks[4]))})
            assert r.status_code == 200
            assert (await client.post(f"/v1/sessions/{live}/propagate")).status_code == 409
            for part in (frames[5:8], frames[8:]):
                r = await client.post(f"/v1/sessions/{live}/frames", files={"sequence": ("f.npy", npy_bytes(np.stack(part)))})
                assert r.status_code == 200, r.text
            closed = await client.post(f"/v1/sessions/{live}/close")
            assert closed.status_code == 200 and closed.json()["stream"] is False and closed.json()["frames"] == 10
            events = parse_sse((await client.get(f"/v1/sessions/{live}/events")).text)
            assert sorted(e["frame"] for e in events if e["event"] == "frame") == list(range(10))
            assert events[-1]["event"] == "done"
            np.testing.assert_array_equal(await masks_of(client, live), batch)
            assert (await client.post(f"/v1/sessions/{live}/close")).status_code == 409

    asyncio.run(scenario())
