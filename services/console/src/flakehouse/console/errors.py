"""Errors as the JSON API answers them: the gRPC status's HTTP code, and a body naming the status
and the message (and, for SQL, where in it the error is)."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import JSONResponse

from flakehouse.core.errors import FlakehouseError

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
# The query service's located errors end with "(line 2, column 14)" (sql/errors.py).
_WHERE = re.compile(r"\(line (\d+), column (\d+)\)\s*$")


def error_body(status: str, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message}
    where = _WHERE.search(message)
    if where:
        error["line"], error["column"] = int(where[1]), int(where[2])
    return {"error": error}


def error_response(exc: FlakehouseError) -> JSONResponse:
    return json_error(exc.status, exc.message, retry_after_ms=exc.retry_after_ms)


def json_error(status: str, message: str, *, retry_after_ms: int | None = None) -> JSONResponse:
    headers = {}
    if retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, round(retry_after_ms / 1000)))
    return JSONResponse(
        error_body(status, message), status_code=HTTP_STATUS.get(status, 500), headers=headers
    )
