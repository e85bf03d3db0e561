"""A query's cutoff (DESIGN.md §7): where retention and the stored-bytes limit make a dataset's
data begin, taken once per query and applied to the plan as a lower bound on time."""

from __future__ import annotations

from dataclasses import dataclass

from flakehouse.common.v1 import plan_pb2
from flakehouse.core.limits import cutoff_at
from flakehouse.quota.v1 import quota_pb2


@dataclass(frozen=True)
class QueryCutoff:
    """Events before `start_us` are not answered. `retention_s` is set when the cutoff is the
    moving one, now - retention; 0 when it is the dataset's floor (whatever its reason)."""

    start_us: int
    reason: quota_pb2.CutoffReason.ValueType
    retention_s: int = 0


def query_cutoff(limits: quota_pb2.DatasetLimits | None, now_us: int) -> QueryCutoff | None:
    """The cutoff of a query started at `now_us`; None when the dataset has none."""
    cutoff = cutoff_at(limits, now_us)
    if cutoff.cutoff_us <= 0:
        return None
    retention_s = limits.quota.retention_seconds if limits is not None else 0
    moving = bool(retention_s) and cutoff.cutoff_us == now_us - retention_s * 1_000_000
    return QueryCutoff(cutoff.cutoff_us, cutoff.reason, retention_s if moving else 0)


def with_cutoff(time_range: plan_pb2.TimeRange, start_us: int) -> plan_pb2.TimeRange:
    """`time_range` starting no earlier than `start_us`. A range that ends before the cutoff
    becomes empty (start >= end), which storage answers with no rows."""
    narrowed = plan_pb2.TimeRange()
    narrowed.CopyFrom(time_range)
    if not time_range.HasField("start_us") or time_range.start_us < start_us:
        narrowed.start_us = start_us
    return narrowed
