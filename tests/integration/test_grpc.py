"""The gRPC service end to end in-process: real server, real channel, real worker task, tiny model."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.bench.synthetic_video import moving_ellipses
from service.client import GrpcClient
from service.settings import Settings
from tests.integration.grpc_harness import Served, decode_png, grpc_served, png_bytes, requests_from

N, K, SIZE = 10, 4, 48  # frames, annotated frame, frame side


def _sequence() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return moving_ellipses(N, SIZE, SIZE, objects=2, seed=1)


def _open(pb2: Any, **settings: str) -> Any:
    return pb2.TrackRequest(open=pb2.TrackOpen(options=pb2.SessionOptions(settings=settings)))


def _frame(pb2: Any, t: int, image: np.ndarray, mask: np.ndarray | None = None) -> Any:
    msg = pb2.TrackFrame(index=t, image=pb2.Image(encoded=png_bytes(image)))
    if mask is not None:
        msg.mask.png = png_bytes(mask)
    return pb2.TrackRequest(frame=msg)


def test_track_mask_mid_stream_then_correction(embedded_settings: Settings) -> None:
    frames, masks = _sequence()
    correction = masks[7].copy()
    correction[correction == 2] = 0  # a correction that differs visibly: object 2 erased on frame 7

    async def scenario() -> list[Any]:
        async with grpc_served(embedded_settings) as s:
            pb2, first_run_complete = s.pb2, asyncio.Event()
            msgs = [_open(pb2, top_k="10")] + [_frame(pb2, t, f, masks[K] if t == K else None)
                                               for t, f in enumerate(frames)]
            msgs.append(pb2.TrackRequest(annotate=pb2.TrackAnnotate(
                annotation=pb2.Annotation(frame=7, mask=pb2.Mask(png=png_bytes(correction))))))
            got: list[Any] = []
            async for resp in s.stub.Track(requests_from(msgs, {len(msgs) - 1: first_run_complete})):
                got.append(resp)
                if sum(1 for r in got if r.WhichOneof("kind") == "frame" and r.frame.run_id == 1) == N:
                    first_run_complete.set()
            status = await s.stub.GetSession(pb2.GetSessionRequest(session_id=got[0].opened.session_id))
            assert not status.streaming and status.state == "done" and list(status.annotated_frames) == [K, 7]
            return got

    got = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert got[0].WhichOneof("kind") == "opened" and got[-1].WhichOneof("kind") == "done"
    assert got[-1].done.run_id == 2 and got[-1].done.frames_done == N
    for run in (1, 2):
        results = [r.frame for r in got if r.WhichOneof("kind") == "frame" and r.frame.run_id == run]
        assert sorted(r.frame for r in results) == list(range(N))  # every frame exactly once per run
        anchor = K if run == 1 else 4  # run 2 starts from the first annotated frame
        assert {r.frame for r in results if r.direction == 3} == set(range(anchor))  # backward over buffered
        assert all(decode_png(r.mask_png).shape == (SIZE, SIZE) for r in results)
    run1 = {r.frame.frame: r.frame for r in got if r.WhichOneof("kind") == "frame" and r.frame.run_id == 1}
    assert (decode_png(run1[K].mask_png) == masks[K]).all() and list(run1[K].object_ids) == [1, 2]
    run1_order = [r.frame.frame for r in got if r.WhichOneof("kind") == "frame" and r.frame.run_id == 1]
    assert run1_order.index(K) < run1_order.index(N - 1)


def test_track_correction_mask_is_reproduced(embedded_settings: Settings) -> None:
    frames, masks = _sequence()
    fixed = np.zeros_like(masks[2])
    fixed[5:20, 5:20] = 1

    async def scenario() -> dict[int, Any]:
        async with grpc_served(embedded_settings) as s:
            pb2, ready = s.pb2, asyncio.Event()
            msgs = [_open(pb2), *[_frame(pb2, t, f, masks[0] if t == 0 else None) for t, f in enumerate(frames)],
                    pb2.TrackRequest(annotate=pb2.TrackAnnotate(annotation=pb2.Annotation(
                        frame=2, mask=pb2.Mask(raw=pb2.RawMask(labels=fixed.ravel().tolist(), height=SIZE,
                                                                width=SIZE)))))]
            last: dict[int, Any] = {}
            async for resp in s.stub.Track(requests_from(msgs, {len(msgs) - 1: ready})):
                if resp.WhichOneof("kind") == "frame":
                    last[resp.frame.frame] = resp.frame
                    if len(last) == N:
                        ready.set()
            return last

    last = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert sorted(last) == list(range(N)) and all(r.run_id == 2 for r in last.values())
    out = decode_png(last[2].mask_png)
    # object 1 is exactly as drawn; object 2, which the correction does not mention, keeps its prediction
    assert ((out == 1) == (fixed == 1)).all()


def test_sessions_create_get_propagate_delete(embedded_settings: Settings) -> None:
    frames, masks = _sequence()

    async def scenario(s: Served) -> None:
        pb2 = s.pb2
        images = [pb2.Image(encoded=png_bytes(f)) if t % 2 else pb2.Image(raw=pb2.RawImage(
            pixels=f.tobytes(), height=SIZE, width=SIZE, channels=3)) for t, f in enumerate(frames)]
        created = await s.stub.CreateSession(pb2.CreateSessionRequest(
            frames=images, options=pb2.SessionOptions(settings={"top_k": "10"}, labels={"1": "a", "2": "b"})))
        assert created.num_frames == N and created.session_id
        sid = created.session_id
        st = await s.stub.GetSession(pb2.GetSessionRequest(session_id=sid))
        assert (st.num_frames, st.height, st.width, st.state, st.run_id) == (N, SIZE, SIZE, "idle", 0)
        assert dict(st.settings) == {"top_k": "10"} and st.model == "tiny:1"
        req = pb2.PropagateRequest(session_id=sid, direction=pb2.DIRECTION_BOTH,
                                   annotations=[pb2.Annotation(frame=3, mask=pb2.Mask(png=png_bytes(masks[3])))])
        got = [r async for r in s.stub.Propagate(req)]
        kinds = [r.WhichOneof("kind") for r in got]
        assert kinds[0] == "run_started" and kinds[-1] == "done" and kinds.count("frame") == N
        assert sorted(r.frame.frame for r in got if r.HasField("frame")) == list(range(N))
        assert got[-1].done.frames_done == N and got[-1].done.total_frames == N
        assert got[-2].frame.progress.frames_done == N
        st = await s.stub.GetSession(pb2.GetSessionRequest(session_id=sid))
        assert (st.state, st.run_id, st.direction, list(st.annotated_frames)) == ("done", 1, pb2.DIRECTION_BOTH, [3])
        assert st.progress == pytest.approx(1.0)
        fwd = [r async for r in s.stub.Propagate(pb2.PropagateRequest(session_id=sid,
                                                                      direction=pb2.DIRECTION_FORWARD))]
        assert sorted(r.frame.frame for r in fwd if r.HasField("frame")) == list(range(3, N))
        assert {r.frame.run_id for r in fwd if r.HasField("frame")} == {2}
        # a correction on the last frame with scope "affected": only the frames it owns are recomputed
        fix = pb2.PropagateRequest(session_id=sid, direction=pb2.DIRECTION_BOTH, scope="affected", annotations=[
            pb2.Annotation(frame=N - 1, mask=pb2.Mask(png=png_bytes(masks[N - 1])))])
        part = [r async for r in s.stub.Propagate(fix)]
        owned = list(range((3 + N - 1) // 2 + 1, N))
        assert part[0].run_started.total_frames == len(owned) and part[-1].done.frames_done == len(owned)
        assert sorted(r.frame.frame for r in part if r.HasField("frame")) == owned
        await s.stub.DeleteSession(pb2.DeleteSessionRequest(session_id=sid))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.GetSession(pb2.GetSessionRequest(session_id=sid))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(_with_server(embedded_settings, scenario))


def test_health_reflection_and_metrics(embedded_settings: Settings) -> None:
    async def scenario(s: Served) -> None:
        health = health_pb2_grpc.HealthStub(s.channel)
        for name in ("", "imos.v1.Propagation"):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(s.channel)
        answers = [r async for r in refl.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="imos.v1.Propagation")]))]
        names = {svc.name for svc in answers[0].list_services_response.service}
        assert {"imos.v1.Propagation", "grpc.health.v1.Health"} <= names
        assert answers[1].file_descriptor_response.file_descriptor_proto
        with pytest.raises(grpc.aio.AioRpcError):
            await s.stub.GetSession(s.pb2.GetSessionRequest(session_id="nope"))
        text = s.rt.metrics.render().decode()
        assert 'transport="grpc"' in text and 'code="NOT_FOUND"' in text

    asyncio.run(_with_server(embedded_settings, scenario))


async def _track_error(s: Served, msgs: list[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in s.stub.Track(requests_from(msgs)):
            pass
    return err.value


def test_errors_map_to_status_codes(embedded_settings: Settings) -> None:
    frames, masks = _sequence()

    async def scenario(s: Served) -> None:
        pb2 = s.pb2
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.GetSession(pb2.GetSessionRequest(session_id="0" * 32))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "not found" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in s.stub.Propagate(pb2.PropagateRequest(session_id="missing"))]
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        e = await _track_error(s, [_open(pb2), _frame(pb2, 0, frames[0], np.ones((10, 12), np.uint8))])
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "10x12" in e.details() and "48x48" in e.details()
        e = await _track_error(s, [_frame(pb2, 0, frames[0], masks[0])])
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "open" in e.details()
        e = await _track_error(s, [_open(pb2), _frame(pb2, 0, frames[0]), _frame(pb2, 2, frames[1])])
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected 1" in e.details()
        bad = pb2.TrackRequest(frame=pb2.TrackFrame(index=0, image=pb2.Image(encoded=b"not an image")))
        e = await _track_error(s, [_open(pb2), bad])
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "frame 0 is not a readable image" in e.details()
        e = await _track_error(s, [_open(pb2, no_such_setting="1")])
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.CreateSession(pb2.CreateSessionRequest(frames=[pb2.Image(encoded=b"\x89PNG junk")]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        sid = (await s.stub.CreateSession(pb2.CreateSessionRequest(frames=[pb2.Image(
            encoded=png_bytes(f)) for f in frames[:3]]))).session_id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in s.stub.Propagate(pb2.PropagateRequest(session_id=sid, annotations=[
                pb2.Annotation(frame=5, mask=pb2.Mask(png=png_bytes(masks[0])))]))]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "frame 5" in err.value.details()

    asyncio.run(_with_server(embedded_settings, scenario))


def test_client_segment_both_and_one_direction(embedded_settings: Settings) -> None:
    frames, masks = _sequence()
    seen: list[tuple[int, int]] = []

    async def scenario(s: Served) -> tuple[list[np.ndarray], list[np.ndarray]]:
        async with GrpcClient(f"127.0.0.1:{s.port}") as client:
            both = await client.segment(frames, masks[K], K, "both", {"top_k": "10"}, lambda d, t: seen.append((d, t)))
            fwd = await client.segment(frames, masks[K], K, "forward")
        return both, fwd

    both, fwd = asyncio.run(_with_server(embedded_settings, scenario))
    assert len(both) == N and all(m.shape == (SIZE, SIZE) for m in both)
    assert (both[K] == masks[K]).all() and seen[-1] == (N, N)
    assert all(not fwd[t].any() for t in range(K)) and (fwd[K] == masks[K]).all()


async def _with_server(settings: Settings, scenario: Any) -> Any:
    async with grpc_served(settings) as s:
        return await asyncio.wait_for(scenario(s), 60)


def test_track_without_a_mask_ends_at_half_close_and_limits(embedded_settings: Settings) -> None:
    frames, _ = _sequence()

    async def scenario(s: Served) -> None:
        pb2 = s.pb2
        got = [r async for r in s.stub.Track(requests_from([_open(pb2)] + [_frame(pb2, t, f)
                                                                          for t, f in enumerate(frames[:2])]))]
        assert [r.WhichOneof("kind") for r in got] == ["opened"]
        st = await s.stub.GetSession(pb2.GetSessionRequest(session_id=got[0].opened.session_id))
        assert (st.num_frames, st.state, st.streaming) == (2, "idle", False)
        assert [r.WhichOneof("kind") for r in [r async for r in s.stub.Track(requests_from([]))]] == []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.CreateSession(pb2.CreateSessionRequest(frames=[pb2.Image(encoded=png_bytes(f))
                                                                        for f in frames[:3]]))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 2" in err.value.details()
        e = await _track_error(s, [_open(pb2)] + [_frame(pb2, t, f) for t, f in enumerate(frames[:3])])
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        e = await _track_error(s, [pb2.TrackRequest(open=pb2.TrackOpen(options=pb2.SessionOptions(model="other")))])
        assert e.code() == grpc.StatusCode.NOT_FOUND and "tiny:1" in e.details()

    asyncio.run(_with_server(embedded_settings.model_copy(update={"max_frames": 2}), scenario))


def test_error_table_both_ways() -> None:
    from service.errors import (
        Conflict,
        DeadlineExceeded,
        ImosError,
        InvalidInput,
        InvalidMask,
        RunFailed,
        StateError,
        TooLarge,
    )
    from service.gateway.grpc_errors import GENERIC_MESSAGE, from_status, to_status

    assert to_status(InvalidMask("m")) == (grpc.StatusCode.INVALID_ARGUMENT, "m")
    assert to_status(TooLarge("big")) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "big")
    assert to_status(Conflict("c"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert to_status(StateError("secret path"))[1] == GENERIC_MESSAGE
    assert to_status(KeyError("x")) == (grpc.StatusCode.INTERNAL, GENERIC_MESSAGE)
    assert type(from_status(grpc.StatusCode.INVALID_ARGUMENT, "x")) is InvalidInput
    assert type(from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "x")) is TooLarge
    assert type(from_status(grpc.StatusCode.DEADLINE_EXCEEDED, "x")) is DeadlineExceeded
    assert type(from_status(grpc.StatusCode.INTERNAL, "x")) is ImosError
    assert type(from_status(grpc.StatusCode.INTERNAL, "x", "run_failed")) is RunFailed


def test_sequence_file_in_and_results_file_out(embedded_settings: Settings) -> None:
    """CreateSession from one file (a NIfTI volume here) and GetResults as npy / RLE / png-zip."""
    import json
    import zipfile

    import nibabel as nib

    frames, masks = _sequence()
    grey = np.stack([f[..., 0] for f in frames], -1).astype(np.int16)

    async def scenario(s: Served) -> None:
        pb2 = s.pb2
        created = await s.stub.CreateSession(pb2.CreateSessionRequest(
            sequence_file=nib.Nifti1Image(grey, np.eye(4)).to_bytes(), sequence_filename="v.nii"))
        sid = created.session_id
        assert created.num_frames == N
        req = pb2.PropagateRequest(session_id=sid, direction=pb2.DIRECTION_BOTH,
                                   annotations=[pb2.Annotation(frame=2, mask=pb2.Mask(png=png_bytes(masks[2])))])
        _ = [r async for r in s.stub.Propagate(req)]
        npy = await s.stub.GetResults(pb2.GetResultsRequest(session_id=sid, format="npy"))
        assert np.load(io.BytesIO(npy.data)).shape[0] == N and npy.filename == "masks.npy"
        rle = await s.stub.GetResults(pb2.GetResultsRequest(session_id=sid, format="rle"))
        assert "annotations" in json.loads(rle.data)
        zipped = await s.stub.GetResults(pb2.GetResultsRequest(session_id=sid))
        assert len(zipfile.ZipFile(io.BytesIO(zipped.data)).namelist()) == N
        nii = await s.stub.GetResults(pb2.GetResultsRequest(session_id=sid, format="nifti"))
        out = nib.Nifti1Image.from_bytes(__import__("gzip").decompress(nii.data))
        # frames are shown in radiological view; the labelmap goes back onto the voxel grid
        assert out.shape == grey.shape
        assert np.array_equal(np.asarray(out.dataobj)[..., 2] > 0, masks[2][::-1, ::-1].T > 0)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.GetResults(pb2.GetResultsRequest(session_id=sid, format="seg"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "DICOM" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.CreateSession(pb2.CreateSessionRequest(sequence_file=b"\x00garbage", sequence_filename="x.mp4"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(_with_server(embedded_settings, scenario))


def test_malformed_protobuf_is_invalid_argument(embedded_settings: Settings) -> None:
    async def scenario(s: Served) -> None:
        raw = s.channel.unary_unary("/imos.v1.Propagation/GetSession", request_serializer=None,
                                    response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await raw(b"\xff\xff\xff\xff garbage")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "protobuf" in err.value.details()
        stream = s.channel.stream_stream("/imos.v1.Propagation/Track", request_serializer=None,
                                         response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in stream(iter([b"\x0a\xff\xff\xff"]))]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(_with_server(embedded_settings, scenario))


def test_results_as_dicom_seg_classic_by_default_labelmap_on_request(embedded_settings: Settings) -> None:
    """A session made from a DICOM series (one zip): GetResults seg is the classic BINARY Segmentation Storage
    unless seg_type asks for labelmap; another seg_type is INVALID_ARGUMENT naming it."""
    import zipfile

    import pydicom

    from tests.medical_builders import ct_series

    frames, masks = _sequence()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, data in enumerate(ct_series([f[..., 0] for f in frames], spacing=(1, 1, 2))):
            zf.writestr(f"{i}.dcm", data)

    async def scenario(s: Served) -> None:
        pb2 = s.pb2
        sid = (await s.stub.CreateSession(pb2.CreateSessionRequest(sequence_file=buf.getvalue(),
                                                                   sequence_filename="ct.zip"))).session_id
        req = pb2.PropagateRequest(session_id=sid, direction=pb2.DIRECTION_BOTH,
                                   annotations=[pb2.Annotation(frame=2, mask=pb2.Mask(png=png_bytes(masks[2])))])
        _ = [r async for r in s.stub.Propagate(req)]
        classic = await s.stub.GetResults(pb2.GetResultsRequest(session_id=sid, format="seg"))
        ds = pydicom.dcmread(io.BytesIO(classic.data))
        assert str(ds.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.66.4" and ds.SegmentationType == "BINARY"
        labelmap = await s.stub.GetResults(pb2.GetResultsRequest(session_id=sid, format="seg", seg_type="labelmap"))
        assert pydicom.dcmread(io.BytesIO(labelmap.data)).SegmentationType == "LABELMAP"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.GetResults(pb2.GetResultsRequest(session_id=sid, format="seg", seg_type="fractional"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "seg_type" in err.value.details()

    asyncio.run(_with_server(embedded_settings, scenario))
