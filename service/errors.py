"""The one exception tree of iMOS Serve.

Every error the domain raises derives from :class:`ImosError`. Transports
(REST, gRPC, CLI) map these classes to their own status codes in one table
each; nothing below the transports knows about HTTP or gRPC.
"""

from __future__ import annotations


class ImosError(Exception):
    """Base of all domain errors. ``str(err)`` is safe to show to a client."""


class InvalidInput(ImosError):
    """The caller sent something malformed or inconsistent (HTTP 400)."""


class InvalidMask(InvalidInput):
    """The annotation mask is unusable (wrong size, empty, too many objects)."""


class InvalidFrames(InvalidInput):
    """The frames are unusable (none, mixed sizes, NaN/inf, wrong dtype)."""


class TooLarge(InvalidInput):
    """A size limit was exceeded (HTTP 413)."""


class NotFound(ImosError):
    """A named thing (model, session, frame) does not exist (HTTP 404)."""


class ModelError(ImosError):
    """A model cannot be loaded or does not fit its declared architecture."""


class CheckpointError(ModelError):
    """A checkpoint file has missing, unexpected or mis-shaped tensors."""


class StateError(ImosError):
    """A serialised session state is corrupt or incompatible."""


class BackendUnavailable(ImosError):
    """A requested backend or device is not installed here (HTTP 501/503)."""


class StoreUnavailable(ImosError):
    """The session store (Redis) cannot be reached (HTTP 503, gRPC UNAVAILABLE)."""


class Conflict(ImosError):
    """The request does not fit the session's current state (HTTP 409, FAILED_PRECONDITION)."""


class PermissionDenied(ImosError):
    """Missing or wrong credentials (HTTP 401, gRPC UNAUTHENTICATED)."""
