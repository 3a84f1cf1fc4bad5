"""Reading uploads with a size limit, so an oversized body is refused before it is held whole."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.datastructures import UploadFile  # FastAPI's UploadFile is a subclass: routes' parameters fit too

from service.errors import InvalidInput, TooLarge

_CHUNK = 1 << 20


async def read_limited(upload: UploadFile, limit: int, what: str) -> bytes:
    parts, size = [], 0
    while True:
        chunk = await upload.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def json_map(raw: str | None, what: str) -> dict[str, str]:
    """A form field holding a JSON object of strings/numbers, e.g. settings or labels."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidInput(f"{what} must be a JSON object, got {raw[:80]!r}") from None
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        raise InvalidInput(f"{what} must be a JSON object of plain values")
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def form_fields(*allowed: str) -> Callable[[Request], Awaitable[None]]:
    """A route dependency: refuse form fields the route does not know (a typo such as ``format`` for
    ``output`` must not be ignored silently). The parsed form is cached by Starlette, so the route's own
    File/Form parameters read it without parsing it again."""
    known = set(allowed)

    async def check(request: Request) -> None:
        if "multipart/form-data" not in request.headers.get("content-type", "") and \
                "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return
        unknown = sorted(set((await request.form()).keys()) - known)
        if unknown:
            raise InvalidInput(f"unknown form field(s) {', '.join(map(repr, unknown))}; this route takes "
                               f"{', '.join(sorted(known))}")

    return check
