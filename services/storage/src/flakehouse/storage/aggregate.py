"""GROUP BY and the mergeable aggregate states of plan.proto: the groups of a fragment's selected
rows (grouping.py), each aggregate's states per group (aggregators.py, distinct.py,
quantiles.py, stddev.py) over the rows its own filter keeps, and the answer's GroupColumns filled
from them a column at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from flakehouse.common.v1 import plan_pb2
from flakehouse.storage.aggregators import Aggregator, Count, Extreme, Sum
from flakehouse.storage.distinct import CountDistinct
from flakehouse.storage.grouping import GroupIndex, LocalGroups, SegmentGroups, local_groups
from flakehouse.storage.predicate import Filter, Index, ScanSegment
from flakehouse.storage.quantiles import Percentile
from flakehouse.storage.stddev import StdDev

# COUNT_DISTINCT and PERCENTILE keep flakehouse.sketches states per group (distinct.py,
# quantiles.py) and serialize them into AggregateState.sketch.
AGGREGATORS: dict[int, Callable[[plan_pb2.Aggregate], Aggregator]] = {
    plan_pb2.AGGREGATE_FUNCTION_COUNT: Count,
    plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD: Count,
    plan_pb2.AGGREGATE_FUNCTION_SUM: Sum,
    plan_pb2.AGGREGATE_FUNCTION_AVG: Sum,
    plan_pb2.AGGREGATE_FUNCTION_MIN: Extreme,
    plan_pb2.AGGREGATE_FUNCTION_MAX: Extreme,
    plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT: CountDistinct,
    plan_pb2.AGGREGATE_FUNCTION_PERCENTILE: Percentile,
    plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP: StdDev,
    plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP: StdDev,
}
# Functions whose states are another's: the query service finishes them differently.
_SAME_STATE = {
    plan_pb2.AGGREGATE_FUNCTION_AVG: plan_pb2.AGGREGATE_FUNCTION_SUM,
    plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP: plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP,
}


class TooManyGroups(Exception):
    """The fragment's groups outgrew the plan's max_groups (maps to RESOURCE_EXHAUSTED)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the query holds more than {limit} groups (max_groups); narrow it with WHERE or "
            "fewer GROUP BY keys"
        )
        self.limit = limit


class _Filtered:
    """The aggregators that take the rows of one filter (None: every row of their groups)."""

    def __init__(self, expr: plan_pb2.Expr | None) -> None:
        self.filter = Filter(expr) if expr is not None else None
        self.aggregators: list[Aggregator] = []

    def add(self, part: SegmentGroups) -> None:
        # One mask per distinct filter and segment, shared by its aggregators.
        share = part if self.filter is None else part.where(self.filter.true(part.seg))
        if share is None:
            return  # no row passes: the groups keep their empty states
        for aggregator in self.aggregators:
            aggregator.add(share)


def aggregate(
    plan: plan_pb2.QueryPlan,
    scanned: Iterable[tuple[ScanSegment, Index]],
    out: plan_pb2.GroupColumns,
) -> None:
    """Fills `out` (PartialResult.group_columns, in place) with the groups of the selected rows,
    each once: a column per group-by key and a column of states per aggregate of the plan."""
    # Aggregates with the same state (p50, p95 and p99 of one field) share one aggregator.
    shared: dict[bytes, Aggregator] = {}
    by_filter: dict[bytes, _Filtered] = {}
    for a in plan.aggregates:
        key = _state_key(a)
        if key in shared:
            continue
        shared[key] = AGGREGATORS[a.function](a)
        expr = a.filter if a.HasField("filter") else None
        condition = expr.SerializeToString(deterministic=True) if expr is not None else b""
        if condition not in by_filter:
            by_filter[condition] = _Filtered(expr)
        by_filter[condition].aggregators.append(shared[key])
    index = GroupIndex(len(plan.group_by))
    for seg, sel in scanned:
        if len(sel) == 0:
            continue
        local = local_groups(plan, seg, sel)
        target = index.targets(local)
        if plan.max_groups and len(index) > plan.max_groups:
            # Before any state grows for them.
            raise TooManyGroups(plan.max_groups)
        part = SegmentGroups(
            seg, sel, local.group, len(local.sizes), target, len(index), sizes=local.sizes
        )
        for filtered in by_filter.values():
            filtered.add(part)
    if not plan.group_by and not len(index):
        # SELECT count(*) FROM t answers one row even when nothing matches.
        index.targets(LocalGroups(np.zeros(0, dtype=np.intp), np.zeros(1, np.int64), [], []))
    n = len(index)
    out.SetInParent()
    out.size = n
    index.fill_keys(out.keys)
    filled: dict[bytes, plan_pb2.StateColumn] = {}
    for a in plan.aggregates:
        key = _state_key(a)
        column = out.states.add()
        if key in filled:
            column.CopyFrom(filled[key])
        else:
            shared[key].states(n, column)
            filled[key] = column


def _state_key(aggregate: plan_pb2.Aggregate) -> bytes:
    """Equal for aggregates whose partial states are equal: the quantile of a PERCENTILE is
    applied by the query service after the merge, so it is not part of the state, and neither
    is AVG's division or STDDEV_POP's n instead of n - 1. The filter is."""
    key = plan_pb2.Aggregate()
    key.CopyFrom(aggregate)
    key.ClearField("quantile")
    key.function = _SAME_STATE.get(key.function, key.function)
    return key.SerializeToString(deterministic=True)
