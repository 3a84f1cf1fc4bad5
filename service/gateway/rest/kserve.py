"""The KServe v2 / Open Inference Protocol over REST (``/v2``), with Triton's binary tensor extension.

Errors follow the protocol's body, ``{"error": message}``, with the status of the error table.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from service.errors import StoreUnavailable
from service.gateway.rest.sessions import runtime, tenant
from service.integrations.kserve.model import InferenceModel
from service.integrations.kserve.tensors import HEADER, parse_request, response
from service.runtime import Runtime

router = APIRouter(prefix="/v2", tags=["kserve-v2"])
EXTENSIONS = ["binary_tensor_data", "sequence", "parameters"]


@router.get("", summary="Server metadata (Open Inference Protocol)")
async def server_metadata() -> dict[str, object]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("imos-serve")
    except PackageNotFoundError:
        ours = "0"
    return {"name": "imos-serve", "version": ours, "extensions": EXTENSIONS}


@router.get("/health/live", summary="The server is up")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Store reachable and a worker alive")
async def ready(rt: Runtime = Depends(runtime)) -> JSONResponse:
    ok = await _ready(rt)
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
    ok = await _ready(rt)
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


async def _ready(rt: Runtime) -> bool:
    try:
        await rt.store.ping()
    except StoreUnavailable:
        return False
    return rt.worker is not None or bool(await rt.records.live_workers())
