"""The FastAPI application: routers, the error table, metrics and body-size middleware."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from service.errors import TooLarge
from service.gateway.rest import (
    dicomweb,
    errors,
    kserve,
    label_studio,
    monai_label,
    oneshot,
    sessions,
    system,
    ui,
)
from service.gateway.rest.schemas import ErrorOut
from service.runtime import Runtime

log = logging.getLogger("imos.rest")


def create_app(rt: Runtime, health_only: bool = False) -> FastAPI:
    """The REST app; health_only serves /healthz, /readyz and /metrics alone (the worker role's listener)."""
    errors_doc: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut, "description": text} for code, text in (
        (400, "bad input; detail names the problem"), (401, "missing or invalid API key"),
        (404, "unknown, deleted or expired session (or another tenant's)"), (409, "wrong session state"),
        (413, "too large"), (500, "the run failed (code run_failed, failure_code says why) or an internal error"),
        (503, "session store or workers unavailable; retry after Retry-After seconds"),
        (504, "the wait for the run passed its deadline"))}
    app = FastAPI(title="iMOS Serve", version="0.1.0", responses=errors_doc,
                  description="Propagate one annotated mask through a medical video or volume (iMOS / XMem).")
    app.state.runtime = rt
    errors.install(app)
    for module in ((system,) if health_only else (system, sessions, oneshot, dicomweb, label_studio, monai_label,
                                                                kserve, ui)):
        app.include_router(module.router)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        size = request.headers.get("content-length")
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        if size and size.isdigit() and int(size) > rt.settings.max_request_bytes:
            too_large = TooLarge(f"request body of {size} bytes exceeds the limit of {rt.settings.max_request_bytes}")
            return JSONResponse(errors.error_body(too_large, request.state.request_id), status_code=413)
        started = time.perf_counter()
        with rt.tracing.span(f"{request.method} {'/'.join(request.url.path.split('/')[:3])}",
                             request_id=request.state.request_id, method=request.method):
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        rt.metrics.requests.labels("rest", path, str(response.status_code)).inc()
        elapsed = time.perf_counter() - started
        rt.metrics.latency.labels("rest", path).observe(elapsed)
        response.headers["x-request-id"] = request.state.request_id
        log.info("request", extra={"request_id": request.state.request_id, "method": request.method,
                                   "route": path, "status": response.status_code, "ms": round(1000 * elapsed, 1)})
        return response

    return app
