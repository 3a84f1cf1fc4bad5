"""POST /v1/segment: one request in, the masks file out (for PACS-style integrations)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile

from service.errors import ImosError, InvalidInput
from service.gateway.rest.sessions import masks_response, runtime, tenant
from service.gateway.rest.uploads import json_map, read_limited
from service.io.sequence import decode_mask_upload, decode_sequence
from service.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["one-shot"])


@router.post("/segment", summary="Propagate one mask through a sequence and return every frame's mask",
             responses={200: {"content": {"application/zip": {}, "application/octet-stream": {}}}})
async def segment(sequence: UploadFile = File(..., description="zip of PNG/JPEG frames or .npy"),
                  mask: UploadFile = File(..., description="index PNG or .npy, H x W"),
                  frame: int = Form(..., description="index of the annotated frame"),
                  direction: str = Form("both", pattern="^(both|forward|backward)$"),
                  output: str = Form("png-zip", pattern="^(png-zip|npy)$"),
                  settings: str | None = Form(None, description='JSON of XMem settings, e.g. {"size": 480}'),
                  rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> Response:
    limit = rt.settings.max_request_bytes
    frames = decode_sequence(await read_limited(sequence, limit, "sequence"), sequence.filename or "sequence",
                             limit, rt.settings.max_frames)
    labels = decode_mask_upload(await read_limited(mask, limit, "mask"), mask.filename or "mask")
    meta = await rt.sessions.create(who, frames, settings=json_map(settings, "settings"))
    try:
        await rt.sessions.annotate(meta.id, who, frame, labels)
        await rt.sessions.propagate(meta.id, who, direction)
        async for ev in rt.sessions.events(meta.id, who):
            if ev.kind == "error":
                raise InvalidInput(ev.message or "propagation failed")
        result = await rt.sessions.all_labels(meta.id, who)
    except ImosError:
        raise
    finally:
        await rt.sessions.delete(meta.id, who)
    return masks_response(result, output, "masks")
