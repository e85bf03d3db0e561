"""Merging the partial results of storage nodes, and turning the merge into the answer:
final aggregate values (count distinct and percentiles from merged flakehouse.sketches states),
HAVING, ORDER BY, LIMIT and typed result columns.

Everything here runs once per group or row (tens of thousands of them), so it works a column at
a time where it can: the merge keeps one list per aggregate, ORDER BY sorts keys that compare in
C (`finalexpr.sort_column`), LIMIT takes the first rows with a heap, and aggregates that neither
HAVING nor ORDER BY reads are finalized only for the rows answered. See PERFORMANCE.md.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.values import to_value, type_of
from flakehouse.query import finalexpr as fx
from flakehouse.query.finalexpr import Cell, is_number
from flakehouse.query.planner import PlannedQuery
from flakehouse.query.scope import SUPPORTED_AGGREGATES
from flakehouse.query.sqltime import INT64_MAX, INT64_MIN
from flakehouse.query.v1 import query_pb2
from flakehouse.sketches import DistinctState, QuantileState, SketchFormatError

Identity = Hashable
"""A group's key as a dict key: see `_identity`."""


class PartialResultError(ValueError):
    """A storage node's partial result does not fit the plan it was asked to run."""


@dataclass
class Merged:
    """Partial results merged: groups (aggregate queries) or rows (raw-rows queries).

    Groups are numbered in order of arrival: `groups` maps each group's identity to its number,
    `keys[k]` holds the values of group key k of the plan and `columns[i]` the merged states of
    aggregate i, one entry per group.
    """

    groups: dict[Identity, int] = field(default_factory=dict)
    keys: list[list[Cell]] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
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
        if partial.groups:
            _merge_groups(plan, merged, partial.groups)
        return
    if partial.groups:
        raise PartialResultError("groups in the answer to a raw-rows query")
    width = len(plan.select_fields)
    append = merged.rows.append
    for row in partial.rows:
        values = row.values[:]
        if len(values) != width:
            raise PartialResultError(f"a row has {len(values)} values, expected {width}")
        append([None if (k := v.WhichOneof("kind")) is None else getattr(v, k) for v in values])


def _cell(value: events_pb2.Value) -> Cell:
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)  # type: ignore[no-any-return]


# -- group keys ------------------------------------------------------------------------------


def _identity(cell: Cell) -> Hashable:
    """A key value as a dict key. In Python True == 1 == 1.0, but in Flakehouse they are
    different values (of different columns), so their groups stay different; NaNs are one
    value. Strings and ints, the usual keys, are their own identity."""
    if isinstance(cell, float):
        return (_FLOAT, _NAN if cell != cell else cell)
    if isinstance(cell, bool):
        return (_BOOL, cell)
    return cell


_FLOAT, _BOOL, _NAN = "float", "bool", "NaN"


# -- merging groups --------------------------------------------------------------------------


def _merge_groups(
    plan: plan_pb2.QueryPlan, merged: Merged, groups: Sequence[plan_pb2.GroupState]
) -> None:
    if not merged.columns:
        merged.columns = _columns(plan)
        merged.keys = [[] for _ in plan.group_by]
    columns, keys = merged.columns, merged.keys
    width, count = len(plan.group_by), len(columns)
    table = merged.groups
    # Bound once: these run once per group and aggregate. A new group's states are kept as
    # they are (list.append, no Python call): see Column.
    appends = [column.entries.append for column in columns]
    merges = [column.merge for column in columns]
    # A one-key group's value is read from the member its kind most likely uses (one call
    # instead of WhichOneof and getattr); a false value (0, "", unset) takes the long way.
    strings = width == 1 and plan.group_by[0].WhichOneof("kind") == "field"
    cells: list[Cell] = []
    for group in groups:
        # Slices: one call for the whole list, much cheaper than iterating the container.
        states = group.states[:]
        if len(states) != count:
            raise PartialResultError(
                f"a group has {len(states)} aggregate states, expected {count}"
            )
        key_values = group.key[:]
        if len(key_values) != width:
            raise PartialResultError(f"a group key has {len(key_values)} values, expected {width}")
        if width == 1:
            value = key_values[0]
            cell: Cell = value.string_value if strings else value.int_value
            if cell:
                identity: Identity = cell  # a string or an int is its own identity
            else:
                cell = _cell(value)
                identity = _identity(cell)
        else:
            cells = [_cell(value) for value in key_values]
            identity = tuple([_identity(cell) for cell in cells])
        index = table.get(identity)
        if index is None:
            table[identity] = len(table)
            if width == 1:
                keys[0].append(cell)
            else:
                for values, cell in zip(keys, cells, strict=True):
                    values.append(cell)
            if count == 1:
                appends[0](states[0])
            else:
                for append, state in zip(appends, states, strict=True):
                    append(state)
        else:
            for merge, state in zip(merges, states, strict=True):
                merge(index, state)


def _columns(plan: plan_pb2.QueryPlan) -> list[Column]:
    columns: list[Column] = []
    for aggregate in plan.aggregates:
        function = aggregate.function
        if function not in SUPPORTED_AGGREGATES:
            raise PartialResultError(f"cannot merge {plan_pb2.AggregateFunction.Name(function)}")
        if function in (plan_pb2.AGGREGATE_FUNCTION_COUNT, plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD):
            columns.append(Counts())
        elif function in (plan_pb2.AGGREGATE_FUNCTION_SUM, plan_pb2.AGGREGATE_FUNCTION_AVG):
            columns.append(Sums(average=function == plan_pb2.AGGREGATE_FUNCTION_AVG))
        elif function in (plan_pb2.AGGREGATE_FUNCTION_MIN, plan_pb2.AGGREGATE_FUNCTION_MAX):
            columns.append(Extremes(maximum=function == plan_pb2.AGGREGATE_FUNCTION_MAX))
        elif function == plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT:
            columns.append(Sketches(DistinctState, DistinctState.estimate))
        else:
            # p50, p95 and p99 of one field get the same states (they do not depend on the
            # quantile): merged once.
            source = next(
                (
                    column
                    for other, column in zip(plan.aggregates, columns, strict=False)
                    if other.function == function
                    and other.field == aggregate.field
                    and isinstance(column, Sketches)
                ),
                None,
            )
            columns.append(Sketches(QuantileState, _quantile(aggregate.quantile), source))
    return columns


def _quantile(q: float) -> Callable[[QuantileState], Cell]:
    return lambda state: state.quantile(q)


class Column(ABC):
    """The merged states of one aggregate of the plan, one entry per group number.

    A new group's entry is its AggregateState as it arrived; it is decoded only when another
    partial's state of the group arrives (the entry becomes the merged state), or when the
    group is finalized. So a group from one partial costs one list append per aggregate, and
    is never decoded for an aggregate that HAVING and ORDER BY do not read unless answered.
    """

    def __init__(self) -> None:
        self.entries: list[Any] = []

    @abstractmethod
    def merge(self, index: int, state: plan_pb2.AggregateState) -> None:
        """Merge another partial's state of group `index`."""

    @abstractmethod
    def finals(self, indexes: Iterable[int]) -> list[Cell]:
        """The SQL values of the aggregate in these groups."""


_STATE = plan_pb2.AggregateState


class Counts(Column):
    """COUNT and COUNT_FIELD: the sum of the counts."""

    def merge(self, index: int, state: plan_pb2.AggregateState) -> None:
        entry = self.entries[index]
        if type(entry) is _STATE:
            entry = entry.count
        self.entries[index] = entry + state.count

    def finals(self, indexes: Iterable[int]) -> list[Cell]:
        entries = self.entries
        return [
            entry.count if type(entry) is _STATE else entry
            for entry in (entries[i] for i in indexes)
        ]


class Sums(Column):
    """SUM and AVG over int and float values (see plan.proto's AggregateState).

    A merged entry is [count, int_sum, float_seen, float sums]: Python ints do not overflow,
    so the int sum stays exact; the float sums of the partials are added with math.fsum at the
    end, so that the answer does not depend on the order in which partials arrive.
    """

    def __init__(self, average: bool) -> None:
        super().__init__()
        self.average = average

    def merge(self, index: int, state: plan_pb2.AggregateState) -> None:
        entry = self.entries[index]
        if type(entry) is _STATE:
            entry = self.entries[index] = _sum_entry(entry)
        entry[0] += state.count
        entry[1] += state.int_sum
        entry[2] |= state.float_seen
        entry[3].append(state.sum)

    def finals(self, indexes: Iterable[int]) -> list[Cell]:
        entries, average, fsum = self.entries, self.average, math.fsum
        out: list[Cell] = []
        for i in indexes:
            entry = entries[i]
            if type(entry) is _STATE:
                count, int_sum, float_seen, float_sum = (
                    entry.count,
                    entry.int_sum,
                    entry.float_seen,
                    entry.sum,
                )
            else:
                count, int_sum, float_seen, sums = entry
                float_sum = fsum(sums)
            if count == 0:
                out.append(None)
            elif not float_seen:
                # int / int is correctly rounded in Python, even beyond 2**53.
                out.append(int_sum / count if average else int_sum)
            else:
                total = float(int_sum) + float_sum
                out.append(total / count if average else total)
        return out


def _sum_entry(state: plan_pb2.AggregateState) -> list[Any]:
    return [state.count, state.int_sum, state.float_seen, [state.sum]]


class Extremes(Column):
    """MIN and MAX: numbers beat strings and strings beat bools, in either."""

    def __init__(self, maximum: bool) -> None:
        super().__init__()
        self.maximum = maximum

    def merge(self, index: int, state: plan_pb2.AggregateState) -> None:
        current = self.entries[index]
        if type(current) is _STATE:
            current = _cell(current.extreme)
        candidate = _cell(state.extreme)
        if candidate is not None and (current is None or _wins(candidate, current, self.maximum)):
            current = candidate
        self.entries[index] = current

    def finals(self, indexes: Iterable[int]) -> list[Cell]:
        entries = self.entries
        return [
            _cell(entry.extreme) if type(entry) is _STATE else entry
            for entry in (entries[i] for i in indexes)
        ]


def _kind_priority(value: Cell) -> int:
    # In min and max, numbers beat strings and strings beat bools, whatever the order.
    if is_number(value):
        return 2
    return 1 if isinstance(value, str) else 0


def _wins(candidate: Cell, current: Cell, maximum: bool) -> bool:
    """Whether `candidate` replaces `current` as the min (or max)."""
    priority, current_priority = _kind_priority(candidate), _kind_priority(current)
    if priority != current_priority:
        return priority > current_priority
    if candidate != candidate or current != current:
        # NaN never wins against a number (like fmin/fmax): only a group of NaN gives NaN.
        return current != current and candidate == candidate
    if candidate == current:
        # 1 and 1.0 tie; prefer the int so the answer does not depend on arrival order.
        return isinstance(candidate, int) and isinstance(current, float)
    return candidate > current if maximum else candidate < current  # type: ignore[operator]


_State = TypeVar("_State", DistinctState, QuantileState)

# Partial sketch states kept per group before they are merged into one, bounding memory when
# many partitions answer.
_FOLD_AT = 64


class Sketches(Column):
    """COUNT_DISTINCT and PERCENTILE: the serialized states of each group's partials, decoded
    and merged all at once when finalized (one HLL union per group rather than one per
    partial). A malformed state is reported then, or when a group holds too many to keep.

    A merged entry is a list of serialized states, and of decoded ones once folded."""

    def __init__(
        self,
        kind: type[_State],
        read: Callable[[_State], Cell],
        source: Sketches | None = None,
    ) -> None:
        super().__init__()
        self.kind: Any = kind
        self.read: Callable[[Any], Cell] = read
        # An earlier column (p50 of the field this one is p99 of) whose merged state this one
        # shares for the groups where the bytes agree: decoded and merged once.
        self.source = source
        self._merged: dict[int, Any] = {}

    def _parts(self, index: int) -> list[Any]:
        entry = self.entries[index]
        if type(entry) is _STATE:
            data = entry.sketch
            entry = self.entries[index] = [data] if data else []
        return entry  # type: ignore[no-any-return]

    def merge(self, index: int, state: plan_pb2.AggregateState) -> None:
        data = state.sketch
        parts = self._parts(index)
        if not data:
            return
        parts.append(data)
        if len(parts) > _FOLD_AT:
            self.entries[index] = [self._merge(parts)]
        if self._merged:
            self._merged.pop(index, None)  # finalized before: no longer up to date

    def _merge(self, parts: list[Any]) -> Any:
        states = [self._decode(part) if isinstance(part, bytes) else part for part in parts]
        if not states:
            return self.kind.empty()
        # States are immutable: one needs no merge.
        return states[0] if len(states) == 1 else self.kind.merge_all(states)

    def _decode(self, data: bytes) -> Any:
        try:
            return self.kind.from_bytes(data)
        except SketchFormatError as exc:
            raise PartialResultError(f"bad sketch in a partial result: {exc}") from None

    def merged(self, index: int) -> Any:
        """Group `index`'s states merged into one."""
        result = self._merged.get(index)
        if result is None:
            source = self.source
            if source is not None and source._parts(index) == self._parts(index):
                result = source.merged(index)
            else:
                result = self._merge(self._parts(index))
            self._merged[index] = result
        return result

    def finals(self, indexes: Iterable[int]) -> list[Cell]:
        return [self.read(self.merged(i)) for i in indexes]


# -- the answer ------------------------------------------------------------------------------


def finalize(
    planned: PlannedQuery, merged: Merged
) -> tuple[list[query_pb2.ResultColumn], list[events_pb2.Row]]:
    """The answer: result columns (typed when the values agree) and rows."""
    rows_of = _aggregate_columns if planned.is_aggregate else _raw_columns
    cells, columns = [], []
    for name, column in zip(planned.columns, rows_of(planned, merged), strict=True):
        column, value_type = _typed(column)
        cells.append(column)
        columns.append(query_pb2.ResultColumn(name=name, type=value_type))
    return columns, _rows(cells)


def _aggregate_columns(planned: PlannedQuery, merged: Merged) -> list[list[Cell]]:
    """The output columns of an aggregate query, a list of cells each."""
    plan = planned.plan
    if not merged.columns:
        merged.columns = _columns(plan)
        merged.keys = [[] for _ in plan.group_by]
    if not plan.group_by and not merged.groups:
        # SQL: an aggregate without GROUP BY has one row, even over no rows at all.
        merged.groups[()] = 0
        for column in merged.columns:
            column.entries.append(plan_pb2.AggregateState())
    answer = _Groups(merged)
    positions: list[int] | None = None  # all groups, by number
    if planned.having is not None:
        kept = answer.cells(planned.having, None)
        positions = [p for p, keep in enumerate(kept) if keep is True]
    sort_columns = [
        fx.sort_column(answer.cells(sort.expr, positions), sort.descending)
        for sort in planned.order
    ]
    # Then the group keys ascending: equal rows must not come out in whatever order the
    # partials happened to arrive. An int and a float of equal value tie there too: the int
    # comes first.
    keys = [answer.cells(fx.KeyRef(i), positions) for i in range(len(plan.group_by))]
    sort_columns += [fx.sort_column(cells) for cells in keys]
    if any(int in kinds and float in kinds for kinds in map(_types, keys)):
        sort_columns.append(list(zip(*[[type(c) is float for c in k] for k in keys], strict=True)))
    end = None if planned.limit is None else planned.offset + planned.limit
    if sort_columns:
        order = fx.ordered(sort_columns, end)[planned.offset : end]
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
        self.size = len(merged.groups)
        self._finals: dict[int, list[Cell]] = {}

    def cells(self, expr: fx.ValueExpr, positions: list[int] | None) -> list[Cell]:
        def column(ref: fx.Ref) -> list[Cell]:
            if isinstance(ref, fx.KeyRef):
                return _gather(self.merged.keys[ref.index], positions)
            if isinstance(ref, fx.AggRef):
                return self._aggregate(ref.index, positions)
            raise TypeError(f"{ref!r} in an aggregate query")

        size = self.size if positions is None else len(positions)
        return fx.evaluate_columns(expr, column, size)

    def _aggregate(self, index: int, positions: list[int] | None) -> list[Cell]:
        cached = self._finals.get(index)
        if cached is None:
            column = self.merged.columns[index]
            if positions is not None and len(positions) * 2 < self.size:
                return column.finals(positions)
            # Most groups are asked about: finalize them all, once, for later questions too.
            cached = self._finals[index] = column.finals(range(self.size))
        return _gather(cached, positions)


def _gather(values: list[Cell], positions: list[int] | None) -> list[Cell]:
    return values if positions is None else [values[p] for p in positions]


def _types(cells: list[Cell]) -> set[type]:
    return set(map(type, cells))


def _raw_columns(planned: PlannedQuery, merged: Merged) -> list[list[Cell]]:
    rows = merged.rows
    end = None if planned.limit is None else planned.offset + planned.limit
    if planned.order:
        sort_columns = [
            fx.sort_column(_field_cells(sort.expr, rows), sort.descending) for sort in planned.order
        ]
        rows = [rows[i] for i in fx.ordered(sort_columns, end)[planned.offset : end]]
    else:
        rows = rows[planned.offset : end]
    return [_field_cells(output, rows) for output in planned.outputs]


def _field_cells(expr: fx.ValueExpr, rows: list[list[Cell]]) -> list[Cell]:
    def column(ref: fx.Ref) -> list[Cell]:
        if isinstance(ref, fx.FieldRef):
            return [row[ref.index] for row in rows]
        raise TypeError(f"{ref!r} in a raw-rows query")

    return fx.evaluate_columns(expr, column, len(rows))


_VALUE_TYPES: dict[type, events_pb2.ValueType.ValueType] = {
    str: events_pb2.VALUE_TYPE_STRING,
    int: events_pb2.VALUE_TYPE_INT,
    float: events_pb2.VALUE_TYPE_FLOAT,
    bool: events_pb2.VALUE_TYPE_BOOL,
}


def _typed(cells: list[Cell]) -> tuple[list[Cell], events_pb2.ValueType.ValueType]:
    """The column as answered, and its type: the single type of its non-null values, else
    unspecified."""
    kinds = _types(cells)
    if int in kinds:
        # A Value holds int64: an exact int sum beyond it is answered as the nearest float.
        ints: list[int] = [c for c in cells if type(c) is int]  # type: ignore[misc]
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            cells = [
                float(c) if type(c) is int and not INT64_MIN <= c <= INT64_MAX else c for c in cells
            ]
            kinds = _types(cells)
    kinds.discard(type(None))
    types = {
        _VALUE_TYPES[kind]
        if kind in _VALUE_TYPES
        else events_pb2.ValueType.ValueType(type_of(_sample(cells, kind)))
        for kind in kinds
    }
    if len(types) == 1:
        return cells, types.pop()
    return cells, events_pb2.VALUE_TYPE_UNSPECIFIED


def _sample(cells: list[Cell], kind: type) -> Any:
    return next(cell for cell in cells if type(cell) is kind)


def _rows(columns: list[list[Cell]]) -> list[events_pb2.Row]:
    """Rows of Values. Built inside one message: its rows share one arena, which allocates far
    faster than a message per row; the Row objects keep it alive."""
    box = query_pb2.QueryResponse()
    add_row = box.rows.add
    for cells in zip(*columns, strict=True):
        values = add_row().values
        add = values.add
        for cell in cells:
            kind = type(cell)
            if kind is str:
                add(string_value=cell)
            elif kind is int:
                add(int_value=cell)
            elif kind is float:
                add(float_value=cell)
            elif cell is None:
                add()
            else:
                values.append(to_value(cell))
    return list(box.rows)
