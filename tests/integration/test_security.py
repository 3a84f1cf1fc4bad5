"""API keys, tenant isolation on every route and RPC, and no PHI in logs."""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile

import grpc
import numpy as np
import pytest

from service.auth import key_hash
from service.settings import Settings
from tests.integration.grpc_harness import grpc_served, png_bytes
from tests.integration.rest_harness import npy_bytes, parse_sse, rest_client

KEY_A, KEY_B = "alpha-secret-key", "bravo-secret-key"


def _keyed(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_keys": f"alpha:{key_hash(KEY_A)},bravo:{key_hash(KEY_B)}"})


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_rest_keys_and_tenant_isolation_on_every_route(embedded_settings: Settings,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from service.bench.synthetic_video import moving_ellipses
    from tests.medical_builders import PATIENT_ID, PATIENT_NAME, ct_series

    frames, masks = moving_ellipses(4, 48, 48, 1)
    dicom = io.BytesIO()
    with zipfile.ZipFile(dicom, "w") as zf:
        for i, data in enumerate(ct_series([f[..., 0] for f in frames])):
            zf.writestr(f"{i}.dcm", data)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with rest_client(_keyed(embedded_settings)) as (c, _):
            assert (await c.get("/healthz")).status_code == 200 and (await c.get("/readyz")).status_code == 200
            r = await c.post("/v1/sessions", files={"sequence": ("ct.zip", dicom.getvalue())})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert (await c.get("/v1/models", headers=_auth("wrong"))).status_code == 401
            r = await c.post("/v1/sessions", files={"sequence": ("ct.zip", dicom.getvalue())}, headers=_auth(KEY_A))
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            await c.put(f"/v1/sessions/{sid}/masks/1", files={"mask": ("m.npy", npy_bytes(masks[1]))}, headers=_auth(KEY_A))
            await c.post(f"/v1/sessions/{sid}/propagate", headers=_auth(KEY_A))
            assert len(parse_sse((await c.get(f"/v1/sessions/{sid}/events", headers=_auth(KEY_A))).text)) > 4
            other = _auth(KEY_B)
            calls = [c.get(f"/v1/sessions/{sid}", headers=other),
                     c.get(f"/v1/sessions/{sid}/events", headers=other),
                     c.get(f"/v1/sessions/{sid}/masks", headers=other),
                     c.get(f"/v1/sessions/{sid}/masks/1", headers=other),
                     c.put(f"/v1/sessions/{sid}/masks/1", files={"mask": ("m.npy", npy_bytes(masks[1]))}, headers=other),
                     c.post(f"/v1/sessions/{sid}/frames", files={"sequence": ("f.npy", npy_bytes(np.stack(frames)))},
                            headers=other),
                     c.post(f"/v1/sessions/{sid}/propagate", headers=other),
                     c.post(f"/v1/sessions/{sid}/close", headers=other),
                     c.delete(f"/v1/sessions/{sid}", headers=other)]
            for call in calls:
                r = await call
                assert r.status_code == 404, (r.request.method, r.request.url.path, r.status_code)
            assert (await c.get(f"/v1/sessions/{sid}", headers=_auth(KEY_A))).json()["state"] == "done"
            assert (await c.get("/metrics")).status_code == 200  # open unless IMOS_METRICS_REQUIRE_KEY

    asyncio.run(scenario())
    assert PATIENT_NAME not in caplog.text and PATIENT_ID not in caplog.text
    assert KEY_A not in caplog.text


def test_metrics_can_require_a_key(embedded_settings: Settings) -> None:
    async def scenario() -> None:
        settings = _keyed(embedded_settings).model_copy(update={"metrics_require_key": True})
        async with rest_client(settings) as (c, _):
            assert (await c.get("/metrics")).status_code == 401
            assert (await c.get("/metrics", headers=_auth(KEY_B))).status_code == 200

    asyncio.run(scenario())


def test_grpc_keys_and_tenant_isolation_on_every_rpc(embedded_settings: Settings) -> None:
    from service.bench.synthetic_video import moving_ellipses

    frames, masks = moving_ellipses(4, 48, 48, 1)

    async def scenario() -> None:
        async with grpc_served(_keyed(embedded_settings)) as s:
            pb2, stub = s.pb2, s.stub
            a, b = (("authorization", f"Bearer {KEY_A}"),), (("x-api-key", KEY_B),)
            images = [pb2.Image(encoded=png_bytes(f)) for f in frames]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.CreateSession(pb2.CreateSessionRequest(frames=images))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            sid = (await stub.CreateSession(pb2.CreateSessionRequest(frames=images), metadata=a)).session_id
            ann = [pb2.Annotation(frame=0, mask=pb2.Mask(png=png_bytes(masks[0])))]
            calls = [lambda: stub.GetSession(pb2.GetSessionRequest(session_id=sid), metadata=b),
                     lambda: stub.GetResults(pb2.GetResultsRequest(session_id=sid), metadata=b),
                     lambda: stub.DeleteSession(pb2.DeleteSessionRequest(session_id=sid), metadata=b),
                     lambda: _drain(stub.Propagate(pb2.PropagateRequest(session_id=sid, annotations=ann), metadata=b))]
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call()
                assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert (await stub.GetSession(pb2.GetSessionRequest(session_id=sid), metadata=a)).num_frames == 4
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _drain(stub.Track(iter([pb2.TrackRequest(open=pb2.TrackOpen())])))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    asyncio.run(scenario())


async def _drain(stream) -> list:  # type: ignore[no-untyped-def,type-arg]
    return [item async for item in stream]


def test_no_phi_in_logs_over_grpc(embedded_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """A DICOM series with marker patient data through CreateSession, Propagate and GetResults (seg)."""
    from service.bench.synthetic_video import moving_ellipses
    from tests.medical_builders import PATIENT_ID, PATIENT_NAME, ct_series

    frames, masks = moving_ellipses(4, 48, 48, 1)
    instances = ct_series([f[..., 0] for f in frames])
    dicom = io.BytesIO()
    with zipfile.ZipFile(dicom, "w") as zf:
        for i, data in enumerate(instances):
            zf.writestr(f"{i}.dcm", data)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with grpc_served(embedded_settings) as s:
            pb2, stub = s.pb2, s.stub
            sid = (await stub.CreateSession(pb2.CreateSessionRequest(sequence_file=dicom.getvalue(),
                                                                     sequence_filename="ct.zip"))).session_id
            ann = [pb2.Annotation(frame=1, mask=pb2.Mask(png=png_bytes(masks[1])))]
            _ = await _drain(stub.Propagate(pb2.PropagateRequest(session_id=sid, annotations=ann)))
            seg = await stub.GetResults(pb2.GetResultsRequest(session_id=sid, format="seg"))
            assert seg.data[128:132] == b"DICM"
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetSession(pb2.GetSessionRequest(session_id="nope"))

    asyncio.run(scenario())
    assert PATIENT_NAME not in caplog.text and PATIENT_ID not in caplog.text
