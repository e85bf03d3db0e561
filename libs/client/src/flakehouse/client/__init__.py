"""The Flakehouse Python client and the `flakehouse` CLI."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flakehouse.client.client import Client, QueryResult, UploadResult
    from flakehouse.client.cluster import ClusterFile

__all__ = ["Client", "ClusterFile", "QueryResult", "UploadResult"]
_HOMES = {
    "Client": "flakehouse.client.client",
    "QueryResult": "flakehouse.client.client",
    "UploadResult": "flakehouse.client.client",
    "ClusterFile": "flakehouse.client.cluster",
}


def __getattr__(name: str) -> Any:
    """Imported on first use (PEP 562): every CLI command imports this package, and only the
    ones that call a service need gRPC."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
