"""The KServe v2 / Open Inference Protocol over REST (``/v2``), with Triton's binary tensor extension.

Errors follow the protocol's body, ``{"error": message}``, with the status of the error table.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from service.gateway.rest.schemas import InferenceErrorOut
from service.gateway.rest.sessions import runtime, tenant
from service.integrations.kserve.model import EXTENSIONS, InferenceModel, is_ready, server_version
from service.integrations.kserve.tensors import HEADER, parse_request, response
from service.runtime import Runtime

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": InferenceErrorOut, "description": text} for code, text in (
    (400, "bad input; error names the problem"), (401, "missing or invalid API key"),
    (404, "a model this server does not serve"), (409, "wrong session state"), (413, "too large"),
    (500, "the run failed or an internal error"), (503, "store or workers unavailable"),
    (504, "the run passed its deadline"))}
router = APIRouter(prefix="/v2", tags=["kserve-v2"], responses=_ERRORS)


@router.get("", summary="Server metadata (Open Inference Protocol)")
async def server_metadata() -> dict[str, object]:
    return {"name": "imos-serve", "version": server_version(), "extensions": EXTENSIONS}


@router.get("/health/live", summary="The server is up")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Store reachable and a worker alive")
async def ready(rt: Runtime = Depends(runtime)) -> JSONResponse:
    ok = await is_ready(rt)
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{model}", summary="Model metadata: inputs FRAMES, MASK; output MASKS")
@router.get("/models/{model}/versions/{version}", include_in_schema=False)
async def model_metadata(model: str, version: str | None = None, rt: Runtime = Depends(runtime)) -> dict[str, object]:
    served = InferenceModel(rt)
    served.check(model, version)
    return served.metadata()


@router.get("/models/{model}/ready", summary="The model is loaded and a worker can run it")
@router.get("/models/{model}/versions/{version}/ready", include_in_schema=False)
async def model_ready(model: str, version: str | None = None, rt: Runtime = Depends(runtime)) -> JSONResponse:
    InferenceModel(rt).check(model, version)
    ok = await is_ready(rt)
    return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)


@router.post("/models/{model}/infer", summary="Propagate MASK through FRAMES (or one frame of a sequence)")
@router.post("/models/{model}/versions/{version}/infer", include_in_schema=False)
async def infer(request: Request, model: str, version: str | None = None, rt: Runtime = Depends(runtime),
                who: str = Depends(tenant)) -> Response:
    served = InferenceModel(rt)
    served.check(model, version)
    req = parse_request(await request.body(), request.headers.get(HEADER))
    outputs = await served.infer(req, who)
    body, header = response(served.name, served.version, req.id, outputs, req)
    headers = {HEADER: str(header)} if header is not None else {}
    media = "application/octet-stream" if header is not None else "application/json"
    return Response(body, media_type=media, headers=headers)

