"""A failed gRPC call as the FlakehouseError it carries: status, message and retry delay. What
every caller of a service (the client, a link pulling from another cluster) reads back."""

from __future__ import annotations

from typing import Any

import grpc

from flakehouse.core.errors import ERRORS_BY_STATUS, RETRY_AFTER_KEY, FlakehouseError, Internal


def error_from_rpc(exc: grpc.RpcError) -> FlakehouseError:
    """The FlakehouseError matching a failed call's status code, message and retry delay."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    # grpc-stubs types metadata entries as _Metadatum; at run time they are (key, value) pairs.
    trailing: dict[str, Any] = (
        dict(exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else {}  # type: ignore[arg-type]
    )
    retry = trailing.get(RETRY_AFTER_KEY)
    cls = ERRORS_BY_STATUS.get(code.name, Internal)
    return cls(details or code.name, retry_after_ms=int(retry) if retry else None)
