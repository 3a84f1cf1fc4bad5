"""The one exception tree of iMOS Serve, and its one error table.

Every error the domain raises derives from :class:`ImosError`. Each class carries, as class
attributes, everything a transport needs: a stable error ``code`` (in REST bodies, gRPC details
and failed-run events), its HTTP status, its gRPC status code name, the CLI's exit code, and
whether its message is shown to clients (``expose``; otherwise a generic message is, and the
server log has the details). Transports read these attributes and nothing else; nothing below
the transports knows about HTTP or gRPC. ``str(err)`` of an exposed class is safe to show (no
pixels, no patient data).
"""

from __future__ import annotations

from typing import ClassVar

GENERIC_MESSAGE = "internal error; the server log has the details"


class ImosError(Exception):
    """Base of all domain errors."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "INTERNAL"
    exit_code: ClassVar[int] = 2  # the CLI: 2 for every domain error but not-found (3)
    expose: ClassVar[bool] = False

    def public_message(self) -> str:
        """What a client is told."""
        return str(self) if self.expose else GENERIC_MESSAGE


class InvalidInput(ImosError):
    """The caller sent something malformed or inconsistent."""

    code, http_status, grpc_code, expose = "invalid_input", 400, "INVALID_ARGUMENT", True


class InvalidMask(InvalidInput):
    """The annotation mask is unusable (wrong size, empty, too many objects)."""

    code = "invalid_mask"


class InvalidFrames(InvalidInput):
    """The frames are unusable (none, mixed sizes, NaN/inf, wrong dtype)."""

    code = "invalid_frames"


class TooLarge(InvalidInput):
    """A size limit was exceeded."""

    code, http_status, grpc_code = "too_large", 413, "RESOURCE_EXHAUSTED"


class NotFound(ImosError):
    """A named thing (model, session, frame) does not exist."""

    code, http_status, grpc_code, exit_code, expose = "not_found", 404, "NOT_FOUND", 3, True


class ModelError(ImosError):
    """A model cannot be loaded or does not fit its declared architecture."""

    code = "model_error"


class CheckpointError(ModelError):
    """A checkpoint file has missing, unexpected or mis-shaped tensors."""

    code = "checkpoint_error"


class StateError(ImosError):
    """A serialised session state is corrupt or incompatible."""

    code = "state_error"


class BackendUnavailable(ImosError):
    """A requested backend or device is not installed here."""

    code, http_status, grpc_code, expose = "backend_unavailable", 503, "UNAVAILABLE", True


class StoreUnavailable(ImosError):
    """The session store (Redis) cannot be reached."""

    code, http_status, grpc_code, expose = "store_unavailable", 503, "UNAVAILABLE", True


class NoWorker(ImosError):
    """No worker is alive to run the request."""

    code, http_status, grpc_code, expose = "no_worker", 503, "UNAVAILABLE", True


class Conflict(ImosError):
    """The request does not fit the session's current state."""

    code, http_status, grpc_code, expose = "conflict", 409, "FAILED_PRECONDITION", True


class PermissionDenied(ImosError):
    """Missing or wrong credentials."""

    code, http_status, grpc_code, expose = "unauthenticated", 401, "UNAUTHENTICATED", True


class RunFailed(ImosError):
    """A propagation run ended in failure after its attempts; the message is the run's safe error text
    and ``failure_code`` the code of the error that ended it."""

    code, expose = "run_failed", True

    def __init__(self, message: str, failure_code: str = "internal") -> None:
        super().__init__(message)
        self.failure_code = failure_code


class DeadlineExceeded(ImosError):
    """A wait for a run passed its deadline (the run may still finish; its session says how it went)."""

    code, http_status, grpc_code, expose = "deadline_exceeded", 504, "DEADLINE_EXCEEDED", True


def error_classes() -> tuple[type[ImosError], ...]:
    """Every class of the tree, the base included."""
    found: list[type[ImosError]] = [ImosError]
    for cls in found:
        found.extend(c for c in cls.__subclasses__() if c not in found)
    return tuple(found)


def error_class(code: str | None) -> type[ImosError] | None:
    """The class whose stable ``code`` this is (None for an unknown or missing code)."""
    return next((cls for cls in error_classes() if cls.code == code), None)


def failure_error(code: str | None, message: str | None) -> ImosError:
    """The error a waiting caller raises for a run that failed with ``code``: the request's own fault
    keeps its class (a bad mask is a 400 however late it is found), anything else is RunFailed."""
    text = message or "the propagation run failed"
    cls = error_class(code)
    if cls is not None and cls.expose and cls.http_status < 500:
        return cls(text)
    return RunFailed(text, code or "internal")
