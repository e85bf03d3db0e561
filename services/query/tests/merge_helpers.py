"""Hand-built partial results, as storage nodes send them, for the merge and answer tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.columns import from_value_column
from flakehouse.events.values import (
    BOOL,
    FLOAT,
    INT,
    STRING,
    Scalar,
    from_value,
    to_value,
    type_of,
)
from flakehouse.kernels.moments import group_moments
from flakehouse.query.answer import finalize, to_response
from flakehouse.query.merge import merge_partials
from flakehouse.query.sql import PlannedQuery, plan_query
from flakehouse.sketches import DistinctState, QuantileState

UNSPECIFIED = events_pb2.VALUE_TYPE_UNSPECIFIED
Cell = Scalar | None
MEMBERS = {STRING: "string_values", INT: "int_values", FLOAT: "float_values", BOOL: "bool_values"}
# The StateColumn members each kind of state fills.
USES = {
    "count": ("counts",),
    "sum": ("counts", "sums", "int_sums", "float_seen"),
    "extreme": ("extremes",),
    "sketch": ("sketches",),
    "moments": ("counts", "means", "squares"),
}


def plan(sql: str) -> PlannedQuery:
    return plan_query(sql, now_us=0)


@dataclass(frozen=True)
class State:
    """One group's state of one aggregate, as a storage node computes it."""

    kind: str
    count: int = 0
    sum: float = 0.0
    int_sum: int = 0
    float_seen: bool = False
    extreme: Cell = None
    sketch: bytes = b""
    mean: float = 0.0
    squares: float = 0.0


def count(n: int) -> State:
    return State("count", count=n)


def total(n: int, int_sum: int = 0, float_sum: float = 0.0, float_seen: bool = False) -> State:
    return State("sum", count=n, int_sum=int_sum, sum=float_sum, float_seen=float_seen)


def extreme(value: Cell) -> State:
    return State("extreme", extreme=value)


def distinct(*values: Cell) -> State:
    return State("sketch", sketch=DistinctState.from_values(values).to_bytes())


def quantiles(*values: float) -> State:
    return State("sketch", sketch=QuantileState.from_values(values).to_bytes())


def moments(*values: float) -> State:
    """The STDDEV state of these numbers, as storage builds it (flakehouse.kernels.moments)."""
    array = np.array(values, dtype=np.float64)
    (n,), (mean,), (squares,) = group_moments(array, np.zeros(len(array), dtype=np.intp), 1)
    return State("moments", count=int(n), mean=float(mean), squares=float(squares))


Group = tuple[Sequence[Cell], Sequence[State]]


def group(key: Sequence[Cell], *states: State) -> Group:
    return key, states


def value_column(cells: Sequence[Cell]) -> plan_pb2.ValueColumn:
    column = plan_pb2.ValueColumn()
    for cell in cells:
        if cell is None:
            column.types.append(UNSPECIFIED)
        else:
            kind = type_of(cell)
            column.types.append(kind)  # type: ignore[arg-type]
            getattr(column, MEMBERS[kind]).append(cell)
    return column


def state_column(states: Sequence[State]) -> plan_pb2.StateColumn:
    (kind,) = {state.kind for state in states}
    column = plan_pb2.StateColumn()
    uses = USES[kind]
    if "counts" in uses:
        column.counts.extend(state.count for state in states)
    if "sums" in uses:
        column.sums.extend(state.sum for state in states)
        column.int_sums.extend(state.int_sum for state in states)
        column.float_seen.extend(state.float_seen for state in states)
    if "extremes" in uses:
        column.extremes.CopyFrom(value_column([state.extreme for state in states]))
    if "sketches" in uses:
        column.sketches.extend(state.sketch for state in states)
    if "means" in uses:
        column.means.extend(state.mean for state in states)
        column.squares.extend(state.squares for state in states)
    return column


def groups(*rows: Group) -> plan_pb2.PartialResult:
    """A partial result holding these groups, as columns."""
    if not rows:
        return plan_pb2.PartialResult()
    keys, states = zip(*rows, strict=True)
    columns = plan_pb2.GroupColumns(size=len(rows))
    columns.keys.extend(value_column(cells) for cells in zip(*keys, strict=True))
    columns.states.extend(state_column(column) for column in zip(*states, strict=True))
    return plan_pb2.PartialResult(group_columns=columns)


def rows(*values: Sequence[Cell]) -> plan_pb2.PartialResult:
    return plan_pb2.PartialResult(
        rows=[events_pb2.Row(values=[to_value(v) for v in row]) for row in values]
    )


def answer(
    planned: PlannedQuery, partials: Sequence[plan_pb2.PartialResult]
) -> tuple[list[tuple[str, int]], list[list[Cell]]]:
    merged = merge_partials(planned, partials)
    columns, result = finalize(planned, merged)
    cells = [[from_value(v) for v in row.values] for row in result]
    # The columnar answer holds the same cells, of the same types.
    columnar = to_response(planned, merged, columnar=True)
    assert not columnar.rows and list(columnar.columns) == columns
    by_column = [from_value_column(c) for c in columnar.column_values]
    assert [[repr(c) for c in row] for row in zip(*by_column, strict=True)] == [
        [repr(c) for c in row] for row in cells
    ]
    return [(c.name, c.type) for c in columns], cells
