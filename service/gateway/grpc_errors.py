"""The one table from domain errors to gRPC status codes (and back, for the client)."""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from service.errors import (
    Conflict,
    ImosError,
    InvalidFrames,
    InvalidInput,
    InvalidMask,
    NotFound,
    PermissionDenied,
    StoreUnavailable,
    TooLarge,
)

log = logging.getLogger("imos.grpc")

GENERIC_MESSAGE = "internal error; the server log has the details"


class ExplicitStatus(Exception):
    """A status the transport itself decided (e.g. a worker reported a failed run): passed as is."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


def status_table() -> tuple[tuple[type[ImosError], grpc.StatusCode], ...]:
    """Domain class -> status code, most specific first (the first isinstance match wins)."""
    return (
        (TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),  # before InvalidInput: TooLarge derives from it
        (InvalidMask, grpc.StatusCode.INVALID_ARGUMENT),
        (InvalidFrames, grpc.StatusCode.INVALID_ARGUMENT),
        (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound, grpc.StatusCode.NOT_FOUND),
        (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
        (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
        (PermissionDenied, grpc.StatusCode.UNAUTHENTICATED),
    )


def code_for(exc: BaseException) -> grpc.StatusCode:
    """The status code of an exception (INTERNAL for anything the table does not name)."""
    if isinstance(exc, ExplicitStatus):
        return exc.code
    for cls, code in status_table():
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and details a client sees for an exception.

    Mapped domain errors carry their own message (safe to show by the tree's
    contract); anything else is INTERNAL with a generic message, logged here.
    """
    if isinstance(exc, ExplicitStatus):
        return exc.code, exc.details
    if any(isinstance(exc, cls) for cls, _ in status_table()):
        return code_for(exc), str(exc)
    log.error("unhandled error in a gRPC call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, GENERIC_MESSAGE


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    """End the call with the status the table gives for exc (raises, as context.abort does)."""
    code, details = to_status(exc)
    await context.abort(code, details)
    raise AssertionError("context.abort returned")  # abort always raises; this keeps type checkers honest


def from_status(code: grpc.StatusCode, details: str) -> ImosError:
    """The domain error a client raises for a failed call (the table read backwards).

    A code several classes share gives the most general of them (INVALID_ARGUMENT -> InvalidInput).
    """
    matches = [cls for cls, mapped in status_table() if mapped == code]
    if matches:
        return matches[-1](details)
    return ImosError(f"{code.name}: {details}")
