"""Domain errors that carry their gRPC status, mapped once by the server interceptor and back by
the client."""

from __future__ import annotations

import grpc


class FlakehouseError(Exception):
    """Base of errors whose message is safe to show to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_ms = retry_after_ms


class InvalidArgument(FlakehouseError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(FlakehouseError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FlakehouseError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(FlakehouseError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(FlakehouseError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(FlakehouseError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(FlakehouseError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Aborted(FlakehouseError):
    code = grpc.StatusCode.ABORTED


class Unimplemented(FlakehouseError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(FlakehouseError):
    code = grpc.StatusCode.INTERNAL


ERRORS_BY_CODE: dict[grpc.StatusCode, type[FlakehouseError]] = {
    cls.code: cls
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
    )
}

RETRY_AFTER_KEY = "retry-after-ms"
"""Trailing-metadata key that carries a retry delay with RESOURCE_EXHAUSTED or UNAVAILABLE."""
