"""Which dataset topics need their Kafka retention.ms changed: the dataset's retention limit
against what this process last gave the topic. Pure; RetentionFollower applies it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flakehouse.common.v1 import datasets_pb2
from flakehouse.core.limits import current_limits
from flakehouse.quota.v1 import quota_pb2


def retention_configs(retention_seconds: int) -> dict[str, str]:
    """A dataset topic's configs for a retention; none without one (the broker's default)."""
    return {"retention.ms": str(retention_seconds * 1000)} if retention_seconds else {}


def retention_changes(
    live: Iterable[datasets_pb2.DatasetRecord],
    limits: Mapping[str, quota_pb2.DatasetLimits],
    applied: Mapping[str, int],
) -> dict[str, int]:
    """topic -> the retention (seconds, 0: none) to give it. A topic this process never touched
    gets one only when its dataset has a retention: without, it keeps what it was created with.
    Limits of another generation than the live record's are not this topic's."""
    changes = {}
    for record in live:
        known = limits.get(record.name)
        if known is not None and current_limits(known, record.generation) is None:
            # Another incarnation's limits (quota has not caught up with the catalog): the
            # topic keeps what it has until this one's come (0: quota does not say, they apply).
            continue
        wanted = known.quota.retention_seconds if known is not None else 0
        last = applied.get(record.topic)
        if (last is None and wanted) or (last is not None and last != wanted):
            changes[record.topic] = wanted
    return changes
