"""Label Studio's ML backend API under /integrations/label-studio (paste that URL into "Connect model").

Label Studio joins the call names to the URL it was given, so the prefix is kept. With API keys on,
give Label Studio's model connection Basic authentication with the API key as the password (any user
name), or a Bearer header.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends, Request

from service.auth import bearer
from service.errors import InvalidInput
from service.gateway.rest.sessions import runtime
from service.integrations.label_studio.predict import Backend
from service.runtime import Runtime

router = APIRouter(prefix="/integrations/label-studio", tags=["label-studio"])


def ls_tenant(request: Request) -> str:
    """The caller's tenant from a Bearer key or a Basic password (Label Studio's model auth)."""
    rt: Runtime = request.app.state.runtime
    header = request.headers.get("authorization")
    return rt.keys.tenant_for(bearer(header) or _basic_password(header))


def _basic_password(header: str | None) -> str | None:
    scheme, _, blob = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not blob:
        return None
    try:
        _, _, password = base64.b64decode(blob.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password or None


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return body


@router.get("/health", summary="Label Studio's health check (answers within its 1 s)")
async def health(rt: Runtime = Depends(runtime)) -> dict[str, str]:
    return {"status": "UP", "model_class": "iMOS Serve", "model_version": Backend(rt).model_version}


@router.post("/setup", summary="Label Studio connects a project: its host and token are kept for fetching media")
async def setup(request: Request, rt: Runtime = Depends(runtime), _: str = Depends(ls_tenant)) -> dict[str, str]:
    return await Backend(rt).setup(await _json(request))


@router.post("/predict", summary="Propagate each task's drawn region through all its frames, both ways")
async def predict(request: Request, rt: Runtime = Depends(runtime), who: str = Depends(ls_tenant)) -> dict[str, Any]:
    return await Backend(rt).predict(await _json(request), who)


@router.post("/webhook", summary="Label Studio's events (acknowledged; training is not offered)")
async def webhook(request: Request, _: str = Depends(ls_tenant)) -> dict[str, str]:
    await _json(request)
    return {"status": "ok"}
