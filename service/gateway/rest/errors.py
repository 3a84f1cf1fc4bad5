"""The REST error table: domain exception -> HTTP status. The only place that knows both."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import (
    BackendUnavailable,
    CheckpointError,
    Conflict,
    ImosError,
    InvalidInput,
    ModelError,
    NotFound,
    PermissionDenied,
    StateError,
    StoreUnavailable,
    TooLarge,
)

log = logging.getLogger("imos.rest")

# Most specific first: the first matching class wins.
STATUS_TABLE: tuple[tuple[type[ImosError], int], ...] = (
    (TooLarge, 413),
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (PermissionDenied, 401),
    (StoreUnavailable, 503),
    (BackendUnavailable, 503),
    (CheckpointError, 500),
    (ModelError, 500),
    (StateError, 500),
)


def status_for(exc: ImosError) -> int:
    for cls, code in STATUS_TABLE:
        if isinstance(exc, cls):
            return code
    return 500


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _framework(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework errors (unparsable multipart, unknown route) get the same body shape as ours.
        return JSONResponse({"error": "BadRequest" if exc.status_code == 400 else "HTTPError",
                             "detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ImosError)
    async def _domain(request: Request, exc: ImosError) -> JSONResponse:
        code = status_for(exc)
        headers = {"Retry-After": "5"} if code == 503 else ({"WWW-Authenticate": "Bearer"} if code == 401 else None)
        detail = str(exc) if code < 500 or code == 503 else "internal error"
        if code >= 500 and code != 503:
            log.error("request failed", extra={"route": request.url.path, "error": type(exc).__name__})
        return JSONResponse({"error": type(exc).__name__, "detail": detail}, status_code=code, headers=headers)
