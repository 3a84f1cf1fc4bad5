"""REST routes for sessions: create, append, annotate, propagate, status, events, masks, delete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import cast

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from service.auth import bearer
from service.gateway.decoding import decode_volume, read_options
from service.gateway.rest.schemas import (
    Direction,
    FramesAdded,
    MaskSet,
    PropagateIn,
    RunOut,
    SessionCreated,
    SessionStatus,
)
from service.gateway.rest.uploads import form_fields, json_map, read_limited
from service.runtime import Runtime
from service.sessions.source import pack_source


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def tenant(request: Request) -> str:
    """The caller's tenant from its API key (401 without a valid one when keys are configured)."""
    rt: Runtime = request.app.state.runtime
    return rt.keys.tenant_for(bearer(request.headers.get("authorization")))


router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post("", response_model=SessionCreated, status_code=201,
             summary="Create a session from a sequence (DICOM, NIfTI, video, zip of PNG/JPEG, or .npy)",
             dependencies=[Depends(form_fields("sequence", "settings", "labels", "stream", "window", "axis"))])
async def create_session(sequence: UploadFile | None = File(None), settings: str | None = Form(None),
                         labels: str | None = Form(None),
                         stream: bool = Form(False, description="a live stream: masks propagate while frames "
                                                                "and annotations arrive; end it with POST /close"),
                         window: str | None = Form(None, description="CT window preset or LEVEL,WIDTH"),
                         axis: int | None = Form(None, description="NIfTI voxel axis to slice along"),
                         rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> SessionCreated:
    frames: list[np.ndarray] = []
    source = None
    if sequence is not None:
        data = await read_limited(sequence, rt.settings.max_request_bytes, "sequence")
        volume = await decode_volume(rt.settings, data, sequence.filename, read_options(rt.settings, window, axis))
        frames, source = volume.frames, pack_source(volume)
    meta = await rt.sessions.create(who, frames, stream=stream, settings=json_map(settings, "settings"),
                                    labels=json_map(labels, "labels"), source=source)
    return SessionCreated(id=meta.id, frames=len(frames), stream=meta.open)


@router.post("/{sid}/frames", response_model=FramesAdded,
             summary="Append frames (any sequence format: zip of images, .npy, one image, DICOM, NIfTI, video)",
             dependencies=[Depends(form_fields("sequence"))])
async def append_frames(sid: str, sequence: UploadFile = File(...), rt: Runtime = Depends(runtime),
                        who: str = Depends(tenant)) -> FramesAdded:
    data = await read_limited(sequence, rt.settings.max_request_bytes, "sequence")
    frames = (await decode_volume(rt.settings, data, sequence.filename)).frames
    first, total = await rt.sessions.append(sid, who, frames)
    return FramesAdded(first=first, frames=total)


@router.put("/{sid}/masks/{frame}", response_model=MaskSet,
            summary="Put an annotation (index PNG, .npy, NIfTI labelmap or DICOM SEG) on a frame",
            dependencies=[Depends(form_fields("mask"))])
async def put_mask(sid: str, frame: int, mask: UploadFile = File(...), rt: Runtime = Depends(runtime),
                   who: str = Depends(tenant)) -> MaskSet:
    data = await read_limited(mask, rt.settings.max_request_bytes, "mask")
    labels = await rt.sessions.read_annotation(sid, who, data, mask.filename, frame)
    objects = await rt.sessions.annotate(sid, who, frame, labels)
    return MaskSet(frame=frame, objects=list(objects))


@router.post("/{sid}/propagate", response_model=RunOut, status_code=202,
             summary="Propagate every annotation (again after a correction)")
async def propagate(request: Request, sid: str, body: PropagateIn | None = None, rt: Runtime = Depends(runtime),
                    who: str = Depends(tenant)) -> RunOut:
    body = body or PropagateIn(direction="both", scope="all")
    run = await rt.sessions.propagate(sid, who, body.direction, request_id=getattr(request.state, "request_id", None),
                                      scope=body.scope)
    # RunSpec.direction is one of DIRECTIONS: SessionService.propagate refuses any other
    return RunOut(id=run.id, direction=cast(Direction, run.direction), anchors=list(run.anchors),
                  stream=run.stream, num_frames=run.num_frames, span=list(run.span) if run.span else None)


@router.post("/{sid}/close", response_model=SessionStatus,
             summary="End a live stream: no more frames will come, so its passes can finish")
async def close_stream(sid: str, rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> SessionStatus:
    await rt.sessions.close_stream(sid, who)
    return SessionStatus.model_validate(await rt.sessions.status(sid, who))


@router.get("/{sid}", response_model=SessionStatus, summary="Status and progress")
async def get_session(sid: str, rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> SessionStatus:
    return SessionStatus.model_validate(await rt.sessions.status(sid, who))


@router.get("/{sid}/events", summary="Per-frame results and progress as Server-Sent Events",
            response_class=StreamingResponse)
async def events(sid: str, after: str = Query("0", description="resume after this event id"),
                 follow: bool = Query(False, description="keep streaming after the run is done"),
                 last_event_id: str | None = Header(None), rt: Runtime = Depends(runtime),
                 who: str = Depends(tenant)) -> StreamingResponse:
    await rt.sessions.status(sid, who)  # 404 before the stream starts
    start = last_event_id or after

    async def body() -> AsyncIterator[bytes]:
        async for ev in rt.sessions.events(sid, who, start, until_done=not follow):
            payload = {k: v for k, v in ev.__dict__.items() if v is not None and k != "id"}
            yield f"id: {ev.id}\nevent: {ev.kind}\ndata: {json.dumps(payload)}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/{sid}/masks", summary="All masks: png-zip, npy (T x H x W, uint8; uint16 past label 255), "
            "rle (COCO JSON), seg (DICOM SEG, for a session made from a DICOM series), nifti or nrrd (for a NIfTI "
            "or NRRD volume); "
            "409 before any run; headers X-Run-State (running, done, failed) and X-Frames-Done / X-Frames say "
            "whether the file is complete",
            responses={200: {"content": {"application/zip": {}, "application/octet-stream": {},
                                         "application/json": {}, "application/dicom": {}, "application/gzip": {}}}})
async def get_masks(sid: str, format: str = Query("png-zip", pattern="^(png-zip|npy|rle|seg|nifti|nrrd)$"),
                    seg_type: str = Query("binary", pattern="^(binary|labelmap)$",
                                          description="seg: binary (classic Segmentation Storage) or labelmap"),
                    rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> Response:
    enc = await rt.sessions.results_file(sid, who, format, seg_type)
    status = await rt.sessions.status(sid, who)
    # partial results say so: frames the run has not reached yet are background in the file
    return Response(enc.data, media_type=enc.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{sid}-masks{enc.suffix}"',
                             "X-Run-State": str(status["state"]), "X-Frames-Done": str(status["frames_done"]),
                             "X-Frames": str(status["frames"])})


@router.get("/{sid}/masks/{frame}", summary="One frame's mask as an index PNG",
            responses={200: {"content": {"image/png": {}}}})
async def get_mask(sid: str, frame: int, rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> Response:
    return Response(await rt.sessions.mask_png(sid, who, frame), media_type="image/png")


@router.put("/{sid}/labels", summary="Name the objects, e.g. {\"1\": \"Liver\"} (SEG segments, RLE names)")
async def put_labels(sid: str, labels: dict[str, str], rt: Runtime = Depends(runtime),
                     who: str = Depends(tenant)) -> dict[str, dict[str, str]]:
    return {"labels": await rt.sessions.set_labels(sid, who, labels)}


@router.get("/{sid}/frames/{frame}", summary="One frame as the model sees it (grey or RGB PNG), for viewers",
            responses={200: {"content": {"image/png": {}}}})
async def get_frame(sid: str, frame: int, rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> Response:
    return Response(await rt.sessions.frame_png(sid, who, frame), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/{sid}", status_code=204, summary="Delete the session and everything stored for it")
async def delete_session(sid: str, rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> Response:
    await rt.sessions.delete(sid, who)
    return Response(status_code=204)
