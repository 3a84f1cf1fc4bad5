"""REST's reading of the error table (service.errors): domain exception -> HTTP status and body.

Body: ``{"error": class name, "code": stable code, "detail": safe message, "request_id": ...}``.
Anything that is not a domain error is a 500 with the generic message, logged here once.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import GENERIC_MESSAGE, ImosError, RunFailed

log = logging.getLogger("imos.rest")


def status_for(exc: ImosError) -> int:
    return exc.http_status


def error_body(exc: ImosError, request_id: str | None) -> dict[str, str | None]:
    body: dict[str, str | None] = {"error": type(exc).__name__, "code": exc.code, "detail": exc.public_message(),
                                   "request_id": request_id}
    if isinstance(exc, RunFailed):
        body["failure_code"] = exc.failure_code
    return body


def _headers(code: int) -> dict[str, str] | None:
    if code == 503:
        return {"Retry-After": "5"}
    return {"WWW-Authenticate": "Bearer"} if code == 401 else None


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _framework(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework errors (unparsable multipart, unknown route) get the same body shape as ours.
        return JSONResponse({"error": "BadRequest" if exc.status_code == 400 else "HTTPError",
                             "code": "invalid_input" if exc.status_code == 400 else "http_error",
                             "detail": str(exc.detail), "request_id": _request_id(request)},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ImosError)
    async def _domain(request: Request, exc: ImosError) -> JSONResponse:
        code = status_for(exc)
        if not exc.expose:
            log.error("request failed", extra={"route": request.url.path, "error": type(exc).__name__,
                                               "request_id": _request_id(request)})
        body = error_body(exc, _request_id(request))
        if request.url.path.startswith("/v2/"):
            body = {"error": body["detail"], "code": exc.code}  # the Open Inference Protocol's error body
        return JSONResponse(body, status_code=code, headers=_headers(code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error in a request", exc_info=exc,
                  extra={"route": request.url.path, "request_id": _request_id(request)})
        return JSONResponse({"error": "InternalError", "code": "internal", "detail": GENERIC_MESSAGE,
                             "request_id": _request_id(request)}, status_code=500)
