"""Merging the partial results of storage nodes: groups (aggregate queries) or rows (raw-rows
queries), as replies arrive. `answer.py` turns the merge into the answer.

Everything here runs once per group or row (tens of thousands of them), so it works a column at
a time: storage nodes send their groups as columns (plan.proto's GroupColumns), each partial's
keys are mapped to global group numbers in one pass (`groups.GroupIndex`), and the states are
merged with numpy, one array per aggregate (`states.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flakehouse.common.v1 import plan_pb2
from flakehouse.query.finalexpr import Cell
from flakehouse.query.groups import GroupIndex
from flakehouse.query.guardrails import check_groups, too_many_groups
from flakehouse.query.partial import PartialResultError
from flakehouse.query.sql import PlannedQuery
from flakehouse.query.states import StateColumn, state_columns


@dataclass
class Merged:
    """Partial results merged: groups (aggregate queries) or rows (raw-rows queries).

    Groups are numbered in order of arrival, `size` of them (`index`); `columns[i]` holds the
    merged states of aggregate i, one entry per group.
    """

    size: int = 0
    columns: list[StateColumn] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    stats: plan_pb2.ScanStats = field(default_factory=plan_pb2.ScanStats)
    index: GroupIndex | None = None


def merge_partials(planned: PlannedQuery, partials: Iterable[plan_pb2.PartialResult]) -> Merged:
    """Merge partial results; raises PartialResultError when one does not fit the plan, and
    ResourceExhausted (guardrails.too_many_groups) as soon as the groups exceed the plan's
    max_groups."""
    merged = Merged()
    for partial in partials:
        add_partial(planned, merged, partial)
    return merged


def add_partial(planned: PlannedQuery, merged: Merged, partial: plan_pb2.PartialResult) -> None:
    """Merge one more partial result into `merged`, e.g. as replies arrive."""
    stats = merged.stats
    stats.rows_scanned += partial.stats.rows_scanned
    stats.rows_matched += partial.stats.rows_matched
    stats.segments_scanned += partial.stats.segments_scanned
    stats.segments_skipped += partial.stats.segments_skipped
    plan = planned.plan
    if planned.is_aggregate:
        if partial.rows:
            raise PartialResultError("rows in the answer to an aggregate query")
        if partial.HasField("group_columns"):
            _merge_groups(plan, merged, partial.group_columns)
        return
    if partial.HasField("group_columns"):
        raise PartialResultError("groups in the answer to a raw-rows query")
    width = len(plan.select_fields)
    append = merged.rows.append
    for row in partial.rows:
        values = row.values[:]
        if len(values) != width:
            raise PartialResultError(f"a row has {len(values)} values, expected {width}")
        append([None if (k := v.WhichOneof("kind")) is None else getattr(v, k) for v in values])


def prepare(plan: plan_pb2.QueryPlan, merged: Merged) -> GroupIndex:
    """The group index of an aggregate query's merge, created with its state columns."""
    if merged.index is None:
        merged.index = GroupIndex(len(plan.group_by))
        merged.columns = state_columns(plan)
    return merged.index


def _merge_groups(plan: plan_pb2.QueryPlan, merged: Merged, groups: plan_pb2.GroupColumns) -> None:
    check_groups(groups.size, plan.max_groups)
    index = prepare(plan, merged)
    columns, size = merged.columns, groups.size
    if len(groups.keys) != len(plan.group_by):
        raise PartialResultError(
            f"the groups have {len(groups.keys)} key columns, expected {len(plan.group_by)}"
        )
    if len(groups.states) != len(columns):
        raise PartialResultError(
            f"the groups have {len(groups.states)} state columns, expected {len(columns)}"
        )
    # Everything is checked before anything is merged.
    states = [
        column.decode(state, size, f"state column {i}")
        for i, (column, state) in enumerate(zip(columns, groups.states, strict=True))
    ]
    target = index.targets(groups.keys, size)
    if plan.max_groups and index.size > plan.max_groups:
        # Before the states grow to that many groups, where the memory goes; and the merge
        # stays as it was, as after any refused partial.
        index.keys.rollback()
        raise too_many_groups(plan.max_groups)
    merged.size = index.size
    for column, data in zip(columns, states, strict=True):
        column.merge(target, data, merged.size)
