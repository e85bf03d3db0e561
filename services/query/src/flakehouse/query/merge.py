"""Merging the partial results of storage nodes, and turning the merge into the answer:
final aggregate values (count distinct and percentiles from merged flakehouse.sketches states),
HAVING, ORDER BY, LIMIT and typed result columns."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.values import Scalar, from_value, to_value, type_of
from flakehouse.query import finalexpr as fx
from flakehouse.query.finalexpr import Cell, is_number
from flakehouse.query.planner import PlannedQuery
from flakehouse.query.scope import SUPPORTED_AGGREGATES
from flakehouse.query.sqltime import INT64_MAX, INT64_MIN
from flakehouse.query.v1 import query_pb2
from flakehouse.sketches import DistinctState, QuantileState, SketchFormatError


class PartialResultError(ValueError):
    """A storage node's partial result does not fit the plan it was asked to run."""


@dataclass
class Accumulator:
    """The merged AggregateState of one aggregate in one group (see plan.proto)."""

    count: int = 0
    # Float sums of the partials, added with math.fsum at the end so that the answer does not
    # depend on the order in which partials arrive.
    sums: list[float] = field(default_factory=list)
    # Python ints do not overflow, so the exact sum of int values stays exact here.
    int_sum: int = 0
    float_seen: bool = False
    extreme: Scalar | None = None
    # COUNT_DISTINCT and PERCENTILE: the partial states, merged all at once when finalized (one
    # HLL union per group rather than one per partial).
    distinct: list[DistinctState] = field(default_factory=list)
    quantiles: list[QuantileState] = field(default_factory=list)


@dataclass
class Group:
    """One merged group: its key values and one accumulator per aggregate of the plan."""

    key: tuple[Cell, ...]
    states: list[Accumulator]


@dataclass
class Merged:
    """Partial results merged: groups by key (aggregate queries) or rows (raw-rows queries)."""

    groups: dict[tuple[tuple[int, Cell], ...], Group] = field(default_factory=dict)
    rows: list[list[Cell]] = field(default_factory=list)
    stats: plan_pb2.ScanStats = field(default_factory=plan_pb2.ScanStats)


def merge_partials(planned: PlannedQuery, partials: Iterable[plan_pb2.PartialResult]) -> Merged:
    """Merge partial results; raises PartialResultError when one does not fit the plan."""
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
        for group in partial.groups:
            _merge_group(plan, merged, group)
        return
    if partial.groups:
        raise PartialResultError("groups in the answer to a raw-rows query")
    width = len(plan.select_fields)
    for row in partial.rows:
        if len(row.values) != width:
            raise PartialResultError(f"a row has {len(row.values)} values, expected {width}")
        merged.rows.append([from_value(value) for value in row.values])


def _merge_group(plan: plan_pb2.QueryPlan, merged: Merged, group: plan_pb2.GroupState) -> None:
    if len(group.key) != len(plan.group_by):
        raise PartialResultError(
            f"a group key has {len(group.key)} values, expected {len(plan.group_by)}"
        )
    if len(group.states) != len(plan.aggregates):
        raise PartialResultError(
            f"a group has {len(group.states)} aggregate states, expected {len(plan.aggregates)}"
        )
    key = tuple(from_value(value) for value in group.key)
    identity = _identity(key)
    target = merged.groups.get(identity)
    if target is None:
        target = Group(key, [Accumulator() for _ in plan.aggregates])
        merged.groups[identity] = target
    for aggregate, accumulator, state in zip(
        plan.aggregates, target.states, group.states, strict=True
    ):
        _merge_state(aggregate.function, accumulator, state)


def _identity(key: tuple[Cell, ...]) -> tuple[tuple[int, Cell], ...]:
    """A dict key that keeps types apart: in Python True == 1 == 1.0, in Flakehouse they are
    different values (of different columns), so their groups stay different."""
    return tuple((0 if value is None else type_of(value), value) for value in key)


def _merge_state(
    function: plan_pb2.AggregateFunction.ValueType,
    accumulator: Accumulator,
    state: plan_pb2.AggregateState,
) -> None:
    if function not in SUPPORTED_AGGREGATES:
        raise PartialResultError(f"cannot merge {plan_pb2.AggregateFunction.Name(function)}")
    if function in (plan_pb2.AGGREGATE_FUNCTION_COUNT, plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD):
        accumulator.count += state.count
    elif function in (plan_pb2.AGGREGATE_FUNCTION_SUM, plan_pb2.AGGREGATE_FUNCTION_AVG):
        accumulator.count += state.count
        accumulator.int_sum += state.int_sum
        accumulator.sums.append(state.sum)
        accumulator.float_seen |= state.float_seen
    elif function == plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT:
        if state.sketch:
            accumulator.distinct.append(_decode(DistinctState.from_bytes, state.sketch))
            if len(accumulator.distinct) > _FOLD_AT:
                accumulator.distinct = [DistinctState.merge_all(accumulator.distinct)]
    elif function == plan_pb2.AGGREGATE_FUNCTION_PERCENTILE:
        if state.sketch:
            accumulator.quantiles.append(_decode(QuantileState.from_bytes, state.sketch))
            if len(accumulator.quantiles) > _FOLD_AT:
                accumulator.quantiles = [QuantileState.merge_all(accumulator.quantiles)]
    else:
        value = from_value(state.extreme) if state.HasField("extreme") else None
        if value is not None and (
            accumulator.extreme is None
            or _wins(value, accumulator.extreme, function == plan_pb2.AGGREGATE_FUNCTION_MAX)
        ):
            accumulator.extreme = value


# Partial sketch states kept per accumulator before they are merged into one, bounding memory
# when many partitions answer.
_FOLD_AT = 64
_State = TypeVar("_State", DistinctState, QuantileState)


def _decode(from_bytes: Callable[[bytes], _State], data: bytes) -> _State:
    try:
        return from_bytes(data)
    except SketchFormatError as exc:
        raise PartialResultError(f"bad sketch in a partial result: {exc}") from None


def _kind_priority(value: Scalar) -> int:
    # In min and max, numbers beat strings and strings beat bools, whatever the order.
    if is_number(value):
        return 2
    return 1 if isinstance(value, str) else 0


def _wins(candidate: Scalar, current: Scalar, maximum: bool) -> bool:
    """Whether `candidate` replaces `current` as the min (or max)."""
    priority, current_priority = _kind_priority(candidate), _kind_priority(current)
    if priority != current_priority:
        return priority > current_priority
    if candidate == current:
        # 1 and 1.0 tie; prefer the int so the answer does not depend on arrival order.
        return isinstance(candidate, int) and isinstance(current, float)
    return candidate > current if maximum else candidate < current  # type: ignore[operator]


def final_value(aggregate: plan_pb2.Aggregate, accumulator: Accumulator) -> Cell:
    """The SQL value of a merged aggregate."""
    function = aggregate.function
    if function in (plan_pb2.AGGREGATE_FUNCTION_COUNT, plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD):
        return accumulator.count
    if function in (plan_pb2.AGGREGATE_FUNCTION_SUM, plan_pb2.AGGREGATE_FUNCTION_AVG):
        if accumulator.count == 0:
            return None
        float_sum = math.fsum(accumulator.sums)
        if function == plan_pb2.AGGREGATE_FUNCTION_SUM:
            if not accumulator.float_seen:
                return accumulator.int_sum
            return float(accumulator.int_sum) + float_sum
        if not accumulator.float_seen:
            # int / int is correctly rounded in Python, even beyond 2**53.
            return accumulator.int_sum / accumulator.count
        return (float(accumulator.int_sum) + float_sum) / accumulator.count
    if function in (plan_pb2.AGGREGATE_FUNCTION_MIN, plan_pb2.AGGREGATE_FUNCTION_MAX):
        return accumulator.extreme
    if function == plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT:
        return DistinctState.merge_all(accumulator.distinct).estimate()
    if function == plan_pb2.AGGREGATE_FUNCTION_PERCENTILE:
        return QuantileState.merge_all(accumulator.quantiles).quantile(aggregate.quantile)
    raise PartialResultError(f"cannot finalize {plan_pb2.AggregateFunction.Name(function)}")


def finalize(
    planned: PlannedQuery, merged: Merged
) -> tuple[list[query_pb2.ResultColumn], list[events_pb2.Row]]:
    """The answer: result columns (typed when the values agree) and rows."""
    rows_of = _aggregate_rows if planned.is_aggregate else _raw_rows
    cells = rows_of(planned, merged)
    columns = [
        query_pb2.ResultColumn(name=name, type=_column_type(row[i] for row in cells))
        for i, name in enumerate(planned.columns)
    ]
    rows = [events_pb2.Row(values=[to_value(cell) for cell in row]) for row in cells]
    return columns, rows


def _aggregate_rows(planned: PlannedQuery, merged: Merged) -> list[list[Cell]]:
    plan = planned.plan
    groups = list(merged.groups.values())
    if not plan.group_by and not groups:
        # SQL: an aggregate without GROUP BY has one row, even over no rows at all.
        groups = [Group((), [Accumulator() for _ in plan.aggregates])]
    envs = [
        fx.Env(
            keys=group.key,
            aggregates=[
                final_value(aggregate, state)
                for aggregate, state in zip(plan.aggregates, group.states, strict=True)
            ],
        )
        for group in groups
    ]
    if planned.having is not None:
        having = planned.having
        envs = [env for env in envs if fx.evaluate(having, env) is True]
    # After the ORDER BY keys, the group keys ascending: equal rows must not come out in
    # whatever order the partials happened to arrive.
    keys = [(_evaluator(sort.expr), sort.descending) for sort in planned.order]
    keys += [(_key_getter(i), False) for i in range(len(plan.group_by))]
    envs = fx.sort_by(envs, keys)
    envs = _page(envs, planned)
    return [[_output(fx.evaluate(output, env)) for output in planned.outputs] for env in envs]


def _raw_rows(planned: PlannedQuery, merged: Merged) -> list[list[Cell]]:
    envs = [fx.Env(fields=row) for row in merged.rows]
    envs = fx.sort_by(envs, [(_evaluator(sort.expr), sort.descending) for sort in planned.order])
    envs = _page(envs, planned)
    return [[_output(fx.evaluate(output, env)) for output in planned.outputs] for env in envs]


def _evaluator(expr: fx.ValueExpr) -> Callable[[fx.Env], Cell]:
    return lambda env: fx.evaluate(expr, env)


def _key_getter(index: int) -> Callable[[fx.Env], Cell]:
    return lambda env: env.keys[index]


def _page(envs: list[fx.Env], planned: PlannedQuery) -> list[fx.Env]:
    end = None if planned.limit is None else planned.offset + planned.limit
    return envs[planned.offset : end]


def _output(value: Cell) -> Cell:
    # A Value holds int64: an exact int sum beyond it is answered as the nearest float.
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not INT64_MIN <= value <= INT64_MAX
    ):
        return float(value)
    return value


def _column_type(cells: Iterable[Cell]) -> events_pb2.ValueType.ValueType:
    types = {type_of(cell) for cell in cells if cell is not None}
    if len(types) == 1:
        return types.pop()  # type: ignore[return-value]
    return events_pb2.VALUE_TYPE_UNSPECIFIED
