"""Health, readiness, metrics and model listing."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from service.auth import bearer
from service.errors import StoreUnavailable
from service.gateway.rest.schemas import ModelOut, ModelsOut, ServingOut
from service.gateway.rest.sessions import runtime, tenant
from service.runtime import Runtime

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Store reachable; the model loaded (where this process runs one); for a gateway, "
            "a live worker")
async def readyz(rt: Runtime = Depends(runtime)) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await rt.store.ping()
        checks["store"] = "ok"
    except StoreUnavailable as exc:
        checks["store"] = str(exc)
    checks["model"] = "ok" if rt.engine is not None or rt.worker is None else "not loaded"
    if rt.worker is None and checks["store"] == "ok":  # a gateway: ready when a worker is there to run its work
        checks["workers"] = "ok" if await rt.records.live_workers() else \
            f"no worker has reported in the last {rt.settings.lease_ttl_s:g} s"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics (API key required when IMOS_METRICS_REQUIRE_KEY)")
async def metrics(request: Request, rt: Runtime = Depends(runtime)) -> Response:
    if rt.settings.metrics_require_key:
        rt.keys.tenant_for(bearer(request.headers.get("authorization")))
    try:
        rt.metrics.queue_depth.set(await rt.store.queue_depth(rt.records.jobs))
    except StoreUnavailable:
        pass
    if rt.engine is not None and rt.engine.stages.device.type == "cuda":
        import torch

        rt.metrics.device_memory.set(torch.cuda.memory_allocated(rt.engine.stages.device))
    return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/models", response_model=ModelsOut, tags=["models"], summary="The model this service runs")
async def models(rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> ModelsOut:
    m, engine = rt.model, rt.engine
    serving = None if engine is None else ServingOut(backend=rt.settings.backend, device=str(engine.stages.device),
                                                     precision=engine.precision,
                                                     precision_reason=engine.precision_reason)
    return ModelsOut(models=[ModelOut(name=m.name, version=m.version, trained=m.trained, description=m.description,
                                      max_objects=m.max_objects, architecture=m.architecture, serving=serving)])
