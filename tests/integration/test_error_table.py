"""The one error table: every domain error class walked through both real transports.

A FastAPI app with the service's error handlers and a grpc.aio server whose handler ends calls with
the service's abort_with raise each class in turn; the client side reads them back as the service's
own clients do (REST body, gRPC status + trailing metadata -> from_status).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.errors import GENERIC_MESSAGE, ImosError, RunFailed, error_classes
from service.gateway.grpc_errors import CODE_KEY, abort_with, from_status
from service.gateway.rest import errors as rest_errors

CLASSES = {cls.__name__: cls for cls in error_classes()}
SECRET = "detail that only the log may see"


def _make(name: str) -> ImosError:
    cls = CLASSES[name]
    return RunFailed(SECRET, "state_error") if cls is RunFailed else cls(SECRET)


def _rest_app() -> FastAPI:
    app = FastAPI()
    rest_errors.install(app)

    @app.get("/raise/{name}")
    async def _raise(name: str) -> None:
        raise _make(name)

    return app


def test_every_class_has_a_distinct_code_and_known_statuses() -> None:
    codes = [cls.code for cls in error_classes()]
    assert len(codes) == len(set(codes)), codes
    for cls in error_classes():
        assert grpc.StatusCode[cls.grpc_code] is not None
        assert 400 <= cls.http_status < 600 and cls.exit_code in (2, 3)
        # client errors show their message; internal ones never do
        assert cls.expose == (cls.http_status != 500 or cls is RunFailed), cls


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_rest_maps_each_class_from_the_table(name: str) -> None:
    cls = CLASSES[name]
    with TestClient(_rest_app(), raise_server_exceptions=False) as client:
        r = client.get(f"/raise/{name}")
    assert r.status_code == cls.http_status
    body = r.json()
    assert body["error"] == name and body["code"] == cls.code
    assert body["detail"] == (SECRET if cls.expose else GENERIC_MESSAGE)
    if cls is RunFailed:
        assert body["failure_code"] == "state_error"


def test_grpc_maps_each_class_from_the_table_and_back() -> None:
    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await abort_with(context, _make(request.decode()))

    async def scenario() -> None:
        server = grpc.aio.server()
        method = grpc.unary_unary_rpc_method_handler(handler)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Errors", {"Raise": method}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/t.Errors/Raise")
                for name, cls in CLASSES.items():
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await call(name.encode())
                    exc = err.value
                    assert exc.code() == grpc.StatusCode[cls.grpc_code], name
                    assert exc.details() == (SECRET if cls.expose else GENERIC_MESSAGE)
                    code = dict(exc.trailing_metadata() or ())[CODE_KEY]
                    assert code == cls.code
                    back = from_status(exc.code(), exc.details(), str(code))
                    assert type(back) is cls, (name, type(back))
        finally:
            await server.stop(0)

    asyncio.run(scenario())


def test_unexpected_exceptions_are_generic_500s() -> None:
    app = FastAPI()
    rest_errors.install(app)

    @app.get("/boom")
    async def _boom() -> None:
        raise KeyError(SECRET)

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
    assert r.status_code == 500 and r.json()["code"] == "internal" and SECRET not in r.text
