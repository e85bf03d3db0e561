"""What a dataset limit is: the Quota fields that hold one and the values each accepts. No gRPC
or protobuf import: the CLI checks its options with these rules before it makes any call."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from flakehouse.core.errors import InvalidArgument

if TYPE_CHECKING:
    from flakehouse.quota.v1 import quota_pb2

MIN_RETENTION_S = 60
QUOTA_FIELDS = (
    "events_per_second",
    "bytes_per_second",
    "max_stored_bytes",
    "retention_seconds",
    "max_concurrent_queries",
)


def validate_quota(quota: quota_pb2.Quota) -> None:
    """Raises InvalidArgument naming the first limit that cannot be enforced."""
    for name in ("events_per_second", "bytes_per_second"):
        value = getattr(quota, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"{name} must be a finite number >= 0 (0: unlimited)")
    if 0 < quota.retention_seconds < MIN_RETENTION_S:
        raise InvalidArgument(
            f"retention_seconds must be at least {MIN_RETENTION_S} (0: keep everything), "
            f"not {quota.retention_seconds}"
        )
    if quota.retention_seconds > 100 * 365 * 86400:
        raise InvalidArgument("retention_seconds is more than 100 years")
