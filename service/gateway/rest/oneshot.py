"""POST /v1/segment: one request in, the masks file out (for PACS-style integrations)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile

from service.errors import InvalidInput, InvalidMask, TooLarge
from service.gateway.decoding import decode_volume, read_options
from service.gateway.rest.sessions import runtime, tenant
from service.gateway.rest.uploads import form_fields, json_map, read_limited
from service.io.medical.detect import load_annotation
from service.io.outputs import encode_results
from service.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["one-shot"])


@router.post("/segment", summary="Propagate one mask through a sequence and return every frame's mask",
             responses={200: {"content": {"application/zip": {}, "application/octet-stream": {},
                                          "application/dicom": {}, "application/gzip": {}, "application/json": {}}}},
             dependencies=[Depends(form_fields("sequence", "mask", "frame", "direction", "output", "settings",
                                               "labels", "window", "axis", "seg_type"))])
async def segment(sequence: list[UploadFile] = File(..., description="DICOM (zip, file, or one part per instance), "
                                                                      "NIfTI, video, zip of PNG/JPEG, .npy"),
                  mask: UploadFile = File(..., description="index PNG, .npy, NIfTI labelmap or DICOM SEG (one slice)"),
                  frame: int | None = Form(None, description="annotated frame (implied by a NIfTI/SEG mask)"),
                  direction: str = Form("both", pattern="^(both|forward|backward)$"),
                  output: str = Form("png-zip", pattern="^(png-zip|npy|seg|nifti|nrrd|rle)$"),
                  settings: str | None = Form(None, description='JSON of XMem settings, e.g. {"size": 480}'),
                  labels: str | None = Form(None, description='object names, e.g. {"1": "Liver"}'),
                  window: str | None = Form(None, description="CT window preset or LEVEL,WIDTH"),
                  axis: int | None = Form(None, description="NIfTI voxel axis to slice along"),
                  seg_type: str = Form("binary", pattern="^(binary|labelmap)$",
                                       description="seg output: binary (classic Segmentation Storage) or labelmap"),
                  rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> Response:
    s = rt.settings
    options = read_options(s, window, axis)
    parts = [await read_limited(part, s.max_request_bytes, "sequence") for part in sequence]
    if sum(len(p) for p in parts) > s.max_request_bytes:
        raise TooLarge(f"the sequence parts exceed {s.max_request_bytes} bytes together")
    source = parts[0] if len(parts) == 1 else parts
    volume = await decode_volume(s, source, sequence[0].filename if len(parts) == 1 else None, options)
    ann = await asyncio.to_thread(load_annotation, await read_limited(mask, s.max_request_bytes, "mask"), volume,
                          mask.filename)
    if frame is not None and ann.frame is not None and frame != ann.frame:
        raise InvalidInput(f"frame {frame} disagrees with the mask, which annotates frame {ann.frame}")
    anchor = frame if frame is not None else ann.frame
    if anchor is None:
        raise InvalidMask("say which frame the mask annotates (form field 'frame'); an index PNG does not say")
    names = {int(k): v for k, v in json_map(labels, "labels").items() if k.isdigit()}
    meta = await rt.sessions.one_shot(who, volume.frames, anchor, ann.mask, direction, json_map(settings, "settings"))
    try:
        await rt.sessions.wait_run(meta.id, who)
        result = await rt.sessions.all_labels(meta.id, who)
    finally:
        await rt.sessions.delete(meta.id, who)
    enc = encode_results(output, result, volume, names, rt.sessions.model, seg_type)
    return Response(enc.data, media_type=enc.media_type,
                    headers={"Content-Disposition": f'attachment; filename="masks{enc.suffix}"'})
