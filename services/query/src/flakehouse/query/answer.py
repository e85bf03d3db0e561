"""Turning merged groups or rows into the answer: final aggregate values (count distinct and
percentiles from merged flakehouse.sketches states), HAVING, ORDER BY, LIMIT and typed result
columns.

ORDER BY sorts keys that compare in C (`finalexpr.sort_column`), LIMIT takes the first rows
with a heap, and aggregates that neither HAVING nor ORDER BY reads are finalized only for the
rows answered (count distinct and percentiles with the sketches' batch functions, all those
groups at once).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import numpy as np

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.columns import to_value_column
from flakehouse.events.values import INT64_MAX, INT64_MIN, type_of
from flakehouse.query import finalexpr
from flakehouse.query.finalexpr import Cell
from flakehouse.query.guardrails import check_answer_rows
from flakehouse.query.merge import Merged, prepare
from flakehouse.query.rowwire import encode_rows, plain
from flakehouse.query.sql import PlannedQuery
from flakehouse.query.sql.scalars import is_time_column
from flakehouse.query.v1 import query_pb2


def to_response(
    planned: PlannedQuery,
    merged: Merged,
    *,
    columnar: bool = False,
    raw_times: bool = False,
    max_rows: int = 0,
) -> query_pb2.QueryResponse:
    """A QueryResponse holding the answer's columns (typed when the values agree) and rows, or
    with `columnar` their values column by column (`column_values`); the caller sets the rest.
    Rows are parsed from their serialized form straight into it (no Row messages copied). Time
    columns are typed TIMESTAMP, or INT with `raw_times`: int microseconds either way. An
    aggregate answer of more than `max_rows` rows (0: no limit) is refused, as soon as HAVING
    has said how many there are (guardrails.check_answer_rows)."""
    if planned.is_aggregate:
        answered = _aggregate_columns(planned, merged, max_rows)
    else:
        answered = _raw_columns(planned, merged)
    cells, kinds, columns = [], [], []
    outputs = zip(planned.columns, planned.outputs, answered, strict=True)
    for name, output, column in outputs:
        column, value_type, column_kinds = _typed(column)
        if value_type == events_pb2.VALUE_TYPE_INT and not raw_times and _is_time(planned, output):
            value_type = events_pb2.VALUE_TYPE_TIMESTAMP
        cells.append(column)
        kinds.append(column_kinds)
        columns.append(query_pb2.ResultColumn(name=name, type=value_type))
    response = query_pb2.QueryResponse(columns=columns, truncated=_truncated(planned, merged))
    if columnar:
        response.column_values.extend(
            to_value_column(plain(c, k)) for c, k in zip(cells, kinds, strict=True)
        )
    else:
        response.MergeFromString(encode_rows(cells, kinds))
    return response


def _is_time(planned: PlannedQuery, output: finalexpr.ValueExpr) -> bool:
    """Whether an output column is a time: the `timestamp` field, date_trunc(…) and
    time_bucket(…) (as group keys or raw-row columns), GROUP BY timestamp, or min/max of
    those. An expression over them is a number."""
    plan = planned.plan
    if isinstance(output, finalexpr.FieldRef):
        return is_time_column(plan, plan.select_fields[output.index])
    if isinstance(output, finalexpr.KeyRef):
        key = plan.group_by[output.index]
        return key.WhichOneof("kind") == "time_bucket_us" or is_time_column(plan, key.field)
    if isinstance(output, finalexpr.AggRef):
        aggregate = plan.aggregates[output.index]
        extremes = (plan_pb2.AGGREGATE_FUNCTION_MIN, plan_pb2.AGGREGATE_FUNCTION_MAX)
        return aggregate.function in extremes and is_time_column(plan, aggregate.field)
    return False


def _truncated(planned: PlannedQuery, merged: Merged) -> bool:
    """Whether a raw-rows answer under the default LIMIT left matching rows out: storage sent
    one row more than answered if it had it."""
    if not planned.default_limit or planned.limit is None:
        return False
    return len(merged.rows) > planned.offset + planned.limit


def finalize(
    planned: PlannedQuery, merged: Merged
) -> tuple[list[query_pb2.ResultColumn], list[events_pb2.Row]]:
    """The answer's result columns and rows (`to_response`, as lists)."""
    response = to_response(planned, merged)
    return list(response.columns), list(response.rows)


def _aggregate_columns(planned: PlannedQuery, merged: Merged, max_rows: int) -> list[list[Cell]]:
    """The output columns of an aggregate query, a list of cells each."""
    plan = planned.plan
    index = prepare(plan, merged)
    if not plan.group_by and not merged.size:
        # SQL: an aggregate without GROUP BY has one row, even over no rows at all.
        index.add_empty_key()
        merged.size = index.size
        for column in merged.columns:
            column.resize(merged.size)
    answer = _Groups(merged)
    positions: list[int] | None = None  # all groups, by number
    if planned.having is not None:
        kept = answer.cells(planned.having, None)
        positions = [p for p, keep in enumerate(kept) if keep is True]
    # Before the sort, which is the work an answer too large would waste.
    rows = max(0, (answer.size if positions is None else len(positions)) - planned.offset)
    check_answer_rows(rows if planned.limit is None else min(rows, planned.limit), max_rows)
    sort_columns = [
        finalexpr.sort_column(answer.cells(sort.expr, positions), sort.descending)
        for sort in planned.order
    ]
    # Then the group keys ascending: equal rows must not come out in whatever order the
    # partials happened to arrive. An int and a float of equal value tie there too: the int
    # comes first.
    keys = [answer.cells(finalexpr.KeyRef(i), positions) for i in range(len(plan.group_by))]
    sort_columns += [finalexpr.sort_column(cells) for cells in keys]
    if any(int in kinds and float in kinds for kinds in map(_types, keys)):
        sort_columns.append(list(zip(*[[type(c) is float for c in k] for k in keys], strict=True)))
    end = None if planned.limit is None else planned.offset + planned.limit
    if sort_columns:
        order = finalexpr.ordered(sort_columns, end)[planned.offset : end]
    else:
        # No GROUP BY: the one group of all rows, if HAVING kept it.
        order = list(range(answer.size if positions is None else len(positions)))
        order = order[planned.offset : end]
    page = order if positions is None else [positions[i] for i in order]
    return [answer.cells(output, page) for output in planned.outputs]


class _Groups:
    """Values of post-merge expressions over merged groups, a column at a time, computing each
    aggregate's final values only for the groups asked about. `positions` are group numbers;
    None: all groups, in number order."""

    def __init__(self, merged: Merged) -> None:
        self.merged = merged
        self.size = merged.size
        self._finals: dict[int, list[Cell]] = {}
        self._keys: dict[int, list[Cell]] = {}

    def cells(self, expr: finalexpr.ValueExpr, positions: list[int] | None) -> list[Cell]:
        def column(ref: finalexpr.Ref) -> list[Cell]:
            if isinstance(ref, finalexpr.KeyRef):
                return _gather(self._key(ref.index), positions)
            if isinstance(ref, finalexpr.AggRef):
                return self._aggregate(ref.index, positions)
            raise TypeError(f"{ref!r} in an aggregate query")

        size = self.size if positions is None else len(positions)
        return finalexpr.evaluate_columns(expr, column, size)

    def _key(self, index: int) -> list[Cell]:
        cells = self._keys.get(index)
        if cells is None:
            assert self.merged.index is not None
            cells = self._keys[index] = self.merged.index.key_cells(index)
        return cells

    def _aggregate(self, index: int, positions: list[int] | None) -> list[Cell]:
        cached = self._finals.get(index)
        if cached is None:
            column = self.merged.columns[index]
            if positions is not None and len(positions) * 2 < self.size:
                return column.finals(np.array(positions, dtype=np.intp))
            # Most groups are asked about: finalize them all, once, for later questions too.
            cached = self._finals[index] = column.finals(slice(0, self.size))
        return _gather(cached, positions)


def _gather(values: list[Cell], positions: list[int] | None) -> list[Cell]:
    if positions is None:
        return values
    if len(positions) < 2:
        return [values[p] for p in positions]
    return list(itemgetter(*positions)(values))  # in C: several times faster


def _types(cells: list[Cell]) -> set[type]:
    return set(map(type, cells))


def _raw_columns(planned: PlannedQuery, merged: Merged) -> list[list[Cell]]:
    rows = merged.rows
    end = None if planned.limit is None else planned.offset + planned.limit
    if planned.order:
        sort_columns = [
            finalexpr.sort_column(_field_cells(sort.expr, rows), sort.descending)
            for sort in planned.order
        ]
        rows = [rows[i] for i in finalexpr.ordered(sort_columns, end)[planned.offset : end]]
    else:
        rows = rows[planned.offset : end]
    return [_field_cells(output, rows) for output in planned.outputs]


def _field_cells(expr: finalexpr.ValueExpr, rows: list[list[Cell]]) -> list[Cell]:
    def column(ref: finalexpr.Ref) -> list[Cell]:
        if isinstance(ref, finalexpr.FieldRef):
            return [row[ref.index] for row in rows]
        raise TypeError(f"{ref!r} in a raw-rows query")

    return finalexpr.evaluate_columns(expr, column, len(rows))


_VALUE_TYPES: dict[type, events_pb2.ValueType.ValueType] = {
    str: events_pb2.VALUE_TYPE_STRING,
    int: events_pb2.VALUE_TYPE_INT,
    float: events_pb2.VALUE_TYPE_FLOAT,
    bool: events_pb2.VALUE_TYPE_BOOL,
}


def _typed(cells: list[Cell]) -> tuple[list[Cell], events_pb2.ValueType.ValueType, set[type]]:
    """The column as answered, its type (the single type of its non-null values, else
    unspecified), and the Python types of its cells."""
    kinds = _types(cells)
    if int in kinds:
        # A Value holds int64: an exact int sum beyond it is answered as the nearest float.
        ints: list[int] = cells if len(kinds) == 1 else [c for c in cells if type(c) is int]  # type: ignore[assignment]
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            cells = [
                float(c) if type(c) is int and not INT64_MIN <= c <= INT64_MAX else c for c in cells
            ]
            kinds = _types(cells)
    types = {
        _VALUE_TYPES[kind]
        if kind in _VALUE_TYPES
        else events_pb2.ValueType.ValueType(type_of(_sample(cells, kind)))
        for kind in kinds - {type(None)}
    }
    if len(types) == 1:
        return cells, types.pop(), kinds
    return cells, events_pb2.VALUE_TYPE_UNSPECIFIED, kinds


def _sample(cells: list[Cell], kind: type) -> Any:
    return next(cell for cell in cells if type(cell) is kind)
