"""Domain errors that carry their gRPC status, mapped once by the server interceptor and back by
the client. By name, without importing grpc: the CLI needs these errors for every command, and
gRPC only for the commands that talk to a service."""

from __future__ import annotations


class FlakehouseError(Exception):
    """Base of errors whose message is safe to show to the caller."""

    status = "INTERNAL"
    """The name of its grpc.StatusCode."""

    def __init__(self, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_ms = retry_after_ms


class InvalidArgument(FlakehouseError):
    status = "INVALID_ARGUMENT"


class NotFound(FlakehouseError):
    status = "NOT_FOUND"


class AlreadyExists(FlakehouseError):
    status = "ALREADY_EXISTS"


class FailedPrecondition(FlakehouseError):
    status = "FAILED_PRECONDITION"


class ResourceExhausted(FlakehouseError):
    status = "RESOURCE_EXHAUSTED"


class Unavailable(FlakehouseError):
    status = "UNAVAILABLE"


class DeadlineExceeded(FlakehouseError):
    status = "DEADLINE_EXCEEDED"


class Aborted(FlakehouseError):
    status = "ABORTED"


class Unimplemented(FlakehouseError):
    status = "UNIMPLEMENTED"


class Internal(FlakehouseError):
    status = "INTERNAL"


class Cancelled(FlakehouseError):
    """The caller gave up: a page's query cancelled by its user."""

    status = "CANCELLED"


class Unauthenticated(FlakehouseError):
    """No valid token: missing, malformed, unknown or revoked. The message never holds it."""

    status = "UNAUTHENTICATED"


class PermissionDenied(FlakehouseError):
    """A valid token that does not grant what the call needs; the message says what is missing."""

    status = "PERMISSION_DENIED"


ERRORS_BY_STATUS: dict[str, type[FlakehouseError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Aborted,
        Unimplemented,
        Internal,
        Cancelled,
        Unauthenticated,
        PermissionDenied,
    )
}
"""The error a status name comes back as (the client's static table)."""

RETRY_AFTER_KEY = "retry-after-ms"
"""Trailing-metadata key that carries a retry delay with RESOURCE_EXHAUSTED or UNAVAILABLE."""
