"""Errors raised inside the emulator, each carrying its gRPC status name.

The WSGI app turns them into ``{"error": {"code", "message", "status"}}`` bodies
with the grpc-gateway HTTP mapping (PROTOCOL.md §5). They are deliberately
separate from ``rlorinfra.errors``: the emulator imports nothing from the
client side, so it cannot quietly agree with it.
"""

from __future__ import annotations

# gRPC status name -> (number, HTTP status). Only the codes the emulator uses,
# and never a 5xx for anything deterministic (clients retry those for minutes).
GRPC_CODES: dict[str, tuple[int, int]] = {
    "OK": (0, 200),
    "CANCELLED": (1, 499),
    "INVALID_ARGUMENT": (3, 400),
    "NOT_FOUND": (5, 404),
    "ALREADY_EXISTS": (6, 409),
    "PERMISSION_DENIED": (7, 403),
    "RESOURCE_EXHAUSTED": (8, 429),
    "FAILED_PRECONDITION": (9, 400),
    "UNIMPLEMENTED": (12, 405),  # only for a wrong method on a known path
    "UNAVAILABLE": (14, 503),
    "UNAUTHENTICATED": (16, 401),
}


class EmulatorError(Exception):
    """An API error: gRPC status name, message, and the HTTP status it maps to."""

    status = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status or GRPC_CODES[self.status][1]

    @property
    def code(self) -> int:
        """The gRPC code number (what ``error.code`` carries on the wire)."""
        return GRPC_CODES[self.status][0]

    def body(self) -> dict[str, dict[str, object]]:
        """The google.rpc-style error body."""
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


class InvalidArgument(EmulatorError):
    """400: the request is malformed or names an impossible value."""

    status = "INVALID_ARGUMENT"


class FailedPrecondition(EmulatorError):
    """400: the request is fine but the job is in the wrong state for it."""

    status = "FAILED_PRECONDITION"


class NotFound(EmulatorError):
    """404: no such job, shape, version or route."""

    status = "NOT_FOUND"


class AlreadyExists(EmulatorError):
    """409: the requested job id is taken (tombstones included)."""

    status = "ALREADY_EXISTS"


class PermissionDenied(EmulatorError):
    """403: the key is valid but the account in the path is not the emulator's."""

    status = "PERMISSION_DENIED"


class Unauthenticated(EmulatorError):
    """401: missing or wrong API key."""

    status = "UNAUTHENTICATED"


class Unavailable(EmulatorError):
    """503: transient (injected faults, a database busy beyond its timeout)."""

    status = "UNAVAILABLE"


class ResourceExhausted(EmulatorError):
    """429: injected rate limiting."""

    status = "RESOURCE_EXHAUSTED"


class MethodNotAllowed(EmulatorError):
    """405: the path exists but not with this method."""

    status = "UNIMPLEMENTED"


class PayloadTooLarge(EmulatorError):
    """413: the request body is over the emulator's limit."""

    status = "INVALID_ARGUMENT"

    def __init__(self, message: str) -> None:
        super().__init__(message, http_status=413)
