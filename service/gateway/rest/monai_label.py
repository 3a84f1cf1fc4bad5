"""The MONAI Label server API under /integrations/monai-label: give that URL to 3D Slicer's MONAI Label module
(or MONAILabelClient). The module joins its calls to the URL's path, so the prefix is kept.

With API keys on, /auth/ says so and the module's login dialog takes any user name and the API key as
the password; the token it gets back is that key, sent as a Bearer header.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import FormData, UploadFile

from service.errors import InvalidInput, NotFound, PermissionDenied
from service.gateway.rest.sessions import runtime, tenant
from service.gateway.rest.uploads import read_limited
from service.integrations.monai_label import protocol
from service.integrations.monai_label.backend import Backend
from service.runtime import Runtime

router = APIRouter(prefix="/integrations/monai-label", tags=["monai-label"])


async def _form(request: Request) -> FormData:
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise InvalidInput("this call takes a multipart/form-data body")
    return await request.form(max_files=4, max_fields=16)


async def _file(form: FormData, name: str, rt: Runtime, required: bool = True) -> tuple[bytes, str | None] | None:
    item = form.get(name)
    if not isinstance(item, UploadFile):
        if required:
            raise InvalidInput(f"the multipart body has no {name!r} file part")
        return None
    return await read_limited(item, rt.settings.max_request_bytes, name), item.filename


def _params(form: FormData) -> dict[str, Any]:
    raw = form.get("params")
    return protocol.parse_params(raw if isinstance(raw, str) else None)


@router.get("/auth/", summary="Whether a login is needed (API keys on)")
async def auth(rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    return {"enabled": rt.keys.enabled, "client_id": "imos-serve", "realm": "imos"}


@router.post("/auth/token", summary="The module's login: any user name, the API key as the password")
async def auth_token(request: Request, rt: Runtime = Depends(runtime)) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=8)
    password = form.get("password")
    if not isinstance(password, str) or not password:
        raise PermissionDenied("log in with the API key as the password")
    rt.keys.tenant_for(password)
    return {"access_token": password, "token_type": "Bearer"}


@router.get("/auth/token/valid", summary="Whether the Bearer token (API key) is still valid")
async def auth_token_valid(_: str = Depends(tenant)) -> dict[str, bool]:
    return {"valid": True}


@router.get("/info/", summary="The app: its labels and the iMOS propagation model")
async def info(rt: Runtime = Depends(runtime), _: str = Depends(tenant)) -> dict[str, Any]:
    return Backend(rt).info()


@router.get("/train/", summary="Training is not offered: 404, which the module reads as 'not running'")
async def train_status(check_if_running: bool = Query(False), _: str = Depends(tenant)) -> Response:
    raise _no_training()


@router.post("/train/{model}", summary="Training is not offered")
async def train_start(model: str, _: str = Depends(tenant)) -> Response:
    raise _no_training()


@router.delete("/train/", summary="Training is not offered")
async def train_stop(_: str = Depends(tenant)) -> Response:
    raise _no_training()


def _no_training() -> NotFound:
    return NotFound("no training task: iMOS Serve propagates with its bundled model and does not train here")


@router.put("/datastore/", summary="Upload a volume (NIfTI or NRRD) under an image id")
async def upload_image(request: Request, image: str = Query(...), rt: Runtime = Depends(runtime),
                       who: str = Depends(tenant)) -> dict[str, Any]:
    form = await _form(request)
    got = await _file(form, "file", rt)
    assert got is not None
    return await Backend(rt).add_image(who, image, got[0], got[1])


@router.put("/datastore/label", summary="Submit the painted label volume of an image; the next Run propagates it")
async def save_label(request: Request, image: str = Query(...), tag: str = Query("final"),
                     rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> dict[str, Any]:
    form = await _form(request)
    got = await _file(form, "label", rt)
    assert got is not None
    return await Backend(rt).save_label(who, image, got[0], _params(form))


@router.put("/session/", summary="Upload the volume open in Slicer; its session id goes with each infer")
async def create_session(request: Request, rt: Runtime = Depends(runtime),
                         who: str = Depends(tenant)) -> dict[str, Any]:
    form = await _form(request)
    got = await _file(form, "files", rt)
    assert got is not None
    return await Backend(rt).add_session(who, got[0], got[1])


@router.get("/session/{session_id}", summary="Whether an uploaded session is still here")
async def get_session(session_id: str, rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> dict[str, Any]:
    return await Backend(rt).session_info(who, session_id)


@router.delete("/session/{session_id}", summary="Forget an uploaded session")
async def remove_session(session_id: str, rt: Runtime = Depends(runtime),
                         who: str = Depends(tenant)) -> dict[str, Any]:
    return await Backend(rt).remove_session(who, session_id)


@router.post("/infer/{model}", summary="Propagate the painted slice(s) through the volume; multipart answer "
                                       "(params with label_names, and the label volume file)")
async def infer(request: Request, model: str, image: str = Query(...), session_id: str | None = Query(None),
                rt: Runtime = Depends(runtime), who: str = Depends(tenant)) -> Response:
    form = await _form(request)
    backend = Backend(rt)
    raw = await _file(form, "file", rt, required=False)
    if raw is not None and not session_id:
        await backend.add_image(who, image, raw[0], raw[1])
    label = await _file(form, "label", rt, required=False)
    answer = await backend.infer(who, model, image, session_id, _params(form), label[0] if label else None)
    body, content_type = protocol.multipart_answer(answer.params, answer.filename, answer.data)
    return Response(body, media_type=content_type)
