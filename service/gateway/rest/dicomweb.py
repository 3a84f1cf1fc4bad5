"""POST /v1/dicomweb/segment: pull a series from a PACS, propagate, store a DICOM SEG back. Also what the review
page needs: the configured PACS names, and a series pulled into a session of its own."""

from __future__ import annotations

import asyncio
import logging
import os

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from fastapi.responses import JSONResponse

from service.errors import ImosError
from service.gateway.decoding import read_options
from service.gateway.rest.sessions import runtime, tenant
from service.gateway.rest.uploads import form_fields, json_map, read_limited
from service.io.medical.dicomweb import endpoints_from_env
from service.io.medical.volume import Volume
from service.io.outputs import parse_names
from service.pacs import pull_series, resolve
from service.pacs_job import PacsRequest, fetch_inputs, publish_result, run_pacs_job, summary
from service.runtime import Runtime
from service.sessions.source import pack_source

router = APIRouter(prefix="/v1/dicomweb", tags=["pacs"])
log = logging.getLogger("imos.pacs")


@router.post("/segment", summary="Pull a series over WADO-RS, propagate its annotation, STOW-RS a DICOM SEG back",
             dependencies=[Depends(form_fields("pacs", "study", "series", "frame", "mask", "annotation_series",
                                               "direction", "labels", "window", "store", "wait",
                                               "seg_type"))])
async def dicomweb_segment(pacs: str = Form(..., description="configured PACS name or DICOMweb root URL"),
                           study: str = Form(..., description="StudyInstanceUID"),
                           series: str = Form(..., description="SeriesInstanceUID"),
                           frame: int | None = Form(None, description="annotated frame (implied by a SEG/NIfTI mask)"),
                           mask: UploadFile | None = File(None, description="index PNG, .npy, NIfTI or DICOM SEG"),
                           annotation_series: str | None = Form(None, description="a SEG series in the PACS"),
                           direction: str = Form("both", pattern="^(both|forward|backward)$"),
                           labels: str | None = Form(None, description='object names, e.g. {"1": "Liver"}'),
                           window: str | None = Form(None, description="CT window preset or LEVEL,WIDTH"),
                           store: bool = Form(True, description="store the SEG back in the PACS"),
                           wait: bool = Form(True, description="false: 202 now, follow the session's events"),
                           seg_type: str = Form("binary", pattern="^(binary|labelmap)$",
                                                description="binary (classic Segmentation Storage) or labelmap"),
                           rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> Response:
    names = {int(k): v for k, v in json_map(labels, "labels").items() if k.isdigit()} if labels else {}
    upload = await read_limited(mask, rt.settings.max_request_bytes, "mask") if mask is not None else None
    req = PacsRequest(resolve(pacs), study, series, frame, direction, names or parse_names(None),
                      read_options(rt.settings, window), upload, annotation_series, store, seg_type)
    volume, ann, frame_k = await fetch_inputs(req)
    meta = await rt.sessions.create(who, volume.frames)
    if wait:
        try:
            result = await run_pacs_job(rt, who, req, volume, ann, frame_k, meta.id)
        finally:
            await rt.sessions.delete(meta.id, who)
        return JSONResponse(summary(result))
    task = asyncio.create_task(_background(rt, who, req, volume, ann, frame_k, meta.id))
    rt.background.add(task)  # a task without a reference may be collected before it finishes
    task.add_done_callback(rt.background.discard)
    return JSONResponse({"session": meta.id, "events": f"/v1/sessions/{meta.id}/events?follow=true"},
                        status_code=202)


@router.get("/pacs", summary="The configured PACS names (IMOS_PACS__<NAME>__URL); no addresses or credentials")
async def pacs_names(_: str = Depends(tenant)) -> dict[str, list[str]]:
    return {"pacs": sorted(endpoints_from_env(os.environ))}


@router.post("/sessions", status_code=201, summary="Pull a series over WADO-RS into a new session (no run yet)",
             dependencies=[Depends(form_fields("pacs", "study", "series", "window"))])
async def pacs_session(pacs: str = Form(..., description="configured PACS name or DICOMweb root URL"),
                       study: str = Form(..., description="StudyInstanceUID"),
                       series: str = Form(..., description="SeriesInstanceUID"),
                       window: str | None = Form(None, description="CT window preset or LEVEL,WIDTH"),
                       rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> JSONResponse:
    volume = await asyncio.to_thread(pull_series, resolve(pacs), study, series, read_options(rt.settings, window))
    meta = await rt.sessions.create(who, volume.frames, source=pack_source(volume))
    return JSONResponse({"id": meta.id, "frames": len(volume.frames), "stream": False}, status_code=201)


async def _background(rt: Runtime, who: str, req: PacsRequest, volume: Volume, ann: np.ndarray, frame_k: int,
                      sid: str) -> None:
    try:
        await publish_result(rt, sid, await run_pacs_job(rt, who, req, volume, ann, frame_k, sid))
    except ImosError as exc:
        await publish_result(rt, sid, exc)
    except Exception as exc:  # the task must not die silently
        log.exception("pacs job failed", extra={"session": sid})
        await publish_result(rt, sid, RuntimeError("internal error"))
        del exc
