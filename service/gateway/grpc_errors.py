"""gRPC's reading of the error table (service.errors): domain error -> status code, and back."""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from service.errors import GENERIC_MESSAGE, ImosError, RunFailed, error_class, error_classes

log = logging.getLogger("imos.grpc")


class ExplicitStatus(Exception):
    """A status the transport itself decided (e.g. a stream the client cancelled): passed as is."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


def grpc_status(cls: type[ImosError]) -> grpc.StatusCode:
    return grpc.StatusCode[cls.grpc_code]


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The status code of an exception (INTERNAL for anything that is not a domain error)."""
    if isinstance(exc, ExplicitStatus):
        return exc.code
    return grpc_status(type(exc)) if isinstance(exc, ImosError) else grpc.StatusCode.INTERNAL


CODE_KEY = "imos-error-code"  # trailing metadata: the stable error code (service.errors)


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and details a client sees: a domain error's safe message, the generic message
    for anything else (which is logged here)."""
    if isinstance(exc, ExplicitStatus):
        return exc.code, exc.details
    if isinstance(exc, ImosError):
        if not exc.expose:
            log.error("gRPC call failed", extra={"error": type(exc).__name__})
        return code_for(exc), exc.public_message()
    log.error("unhandled error in a gRPC call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, GENERIC_MESSAGE


def error_code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, ImosError) else "internal"


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    """End the call with the status the table gives for exc, its stable code in the trailing metadata
    (raises, as context.abort does)."""
    code, details = to_status(exc)
    metadata: tuple[tuple[str, str], ...] = ((CODE_KEY, error_code(exc)),)
    if isinstance(exc, RunFailed):
        metadata += (("imos-failure-code", exc.failure_code),)
    await context.abort(code, details, trailing_metadata=metadata)
    raise AssertionError("context.abort returned")  # abort always raises; this keeps type checkers honest


def from_status(code: grpc.StatusCode, details: str, error: str | None = None) -> ImosError:
    """The domain error a client raises for a failed call: the class of the stable ``error`` code from
    the trailing metadata when it fits the status, else the most general exposed class of the status
    (INVALID_ARGUMENT -> InvalidInput)."""
    named = error_class(error)
    if named is not None and named.grpc_code == code.name:
        return named(details)
    general = [cls for cls in error_classes() if cls.grpc_code == code.name and cls.expose
               and code != grpc.StatusCode.INTERNAL]  # an INTERNAL without a code is no known failure
    if general:
        return general[0](details)
    return ImosError(f"{code.name}: {details}")
