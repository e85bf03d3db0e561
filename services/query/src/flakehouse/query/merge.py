"""Merging the partial results of storage nodes, and turning the merge into the answer:
final aggregate values (count distinct and percentiles from merged flakehouse.sketches states),
HAVING, ORDER BY, LIMIT and typed result columns.

Everything here runs once per group or row (tens of thousands of them), so it works a column at
a time: storage nodes send their groups as columns (plan.proto's GroupColumns), each partial's
keys are mapped to global group numbers in one pass (a dict lookup per key value), and the
states are merged with numpy, one array per aggregate. ORDER BY sorts keys that compare in C
(`finalexpr.sort_column`), LIMIT takes the first rows with a heap, and aggregates that neither
HAVING nor ORDER BY reads are finalized only for the rows answered (count distinct and
percentiles with the sketches' batch functions, all those groups at once).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.columns import VALUE_MEMBERS, to_value_column
from flakehouse.events.values import BOOL, FLOAT, INT, STRING, from_value, to_value, type_of
from flakehouse.query import finalexpr as fx
from flakehouse.query.finalexpr import Cell
from flakehouse.query.sql import PlannedQuery
from flakehouse.query.sql.scope import SUPPORTED_AGGREGATES
from flakehouse.query.sql.sqltime import INT64_MAX, INT64_MIN
from flakehouse.query.v1 import query_pb2
from flakehouse.sketches import (
    DistinctState,
    QuantileState,
    SketchFormatError,
    distinct_of_groups,
    quantiles_of_groups,
)
from flakehouse.sketches.arrays import grow as _grow

Index = npt.NDArray[np.intp]
Positions = slice | Index
"""Group numbers to finalize: a slice for all of them, else an index array."""

_NULL = events_pb2.VALUE_TYPE_UNSPECIFIED
# Whole numbers up to this magnitude convert to float exactly.
_EXACT_FLOAT = 2**53


class PartialResultError(ValueError):
    """A storage node's partial result does not fit the plan it was asked to run."""


@dataclass
class Merged:
    """Partial results merged: groups (aggregate queries) or rows (raw-rows queries).

    Groups are numbered in order of arrival, `size` of them: `keys[k]` holds the values of group
    key k of the plan and `columns[i]` the merged states of aggregate i, one entry per group.
    """

    size: int = 0
    keys: list[list[Cell]] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    stats: plan_pb2.ScanStats = field(default_factory=plan_pb2.ScanStats)
    index: _GroupIndex | None = None


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


# -- value columns ---------------------------------------------------------------------------

_DTYPES: dict[int, type] = {INT: np.int64, FLOAT: np.float64, BOOL: np.bool_}

TypedValues = list[tuple[int, Index | None, Any]]
"""A ValueColumn split by type: (type, the positions holding it or None for all, its values:
a list of str for STRING, None for null, else a numpy array)."""


def _typed_values(column: plan_pb2.ValueColumn, size: int, what: str) -> TypedValues:
    """`column` split by type; raises PartialResultError unless it holds one value per group."""
    types = np.asarray(column.types)
    if len(types) != size:
        raise PartialResultError(f"{what} has {len(types)} values for {size} groups")
    parts: list[tuple[int, Index | None]] = []
    counts = [0] * (BOOL + 1)
    if size:
        low, high = int(types.min()), int(types.max())
        if low < _NULL or high > BOOL:
            raise PartialResultError(
                f"{what} has a value of unknown type {low if low < 0 else high}"
            )
        if low == high:
            parts = [(low, None)]
            counts[low] = size
        else:
            counts = np.bincount(types, minlength=BOOL + 1).tolist()
            parts = [(kind, np.flatnonzero(types == kind)) for kind, n in enumerate(counts) if n]
    for kind, member in VALUE_MEMBERS.items():
        if len(getattr(column, member)) != counts[kind]:
            raise PartialResultError(
                f"{what} has {len(getattr(column, member))} {member} for {counts[kind]} values"
                " of that type"
            )
    out: TypedValues = []
    for kind, positions in parts:
        values: Any = None
        if kind == STRING:
            values = column.string_values[:]
        elif kind != _NULL:
            values = np.asarray(getattr(column, VALUE_MEMBERS[kind]), dtype=_DTYPES[kind])
        out.append((kind, positions, values))
    return out


# -- group keys ------------------------------------------------------------------------------


def _number(table: dict[Any, int], values: list[Any], start: int) -> tuple[Index, list[Any]]:
    """The number of each value in `table`, adding the values it lacks numbered from `start` in
    order of first appearance; returns the numbers and the values added. One dict lookup per
    value (dicts keep insertion order: the values added are its last entries)."""
    if not table:
        ids, missing, new = None, None, values
    else:
        ids = np.fromiter(map(table.get, values, repeat(-1)), dtype=np.intp, count=len(values))
        missing = np.flatnonzero(ids < 0)
        if not len(missing):
            return ids, []
        new = [values[i] for i in missing.tolist()]
    fresh = list(dict.fromkeys(new))
    table.update(zip(fresh, range(start, start + len(fresh)), strict=True))
    found = np.fromiter(map(table.__getitem__, new), dtype=np.intp, count=len(new))
    if ids is None:
        return found, fresh
    ids[missing] = found
    return ids, fresh


def _forget(table: dict[Any, int], count: int) -> None:
    """Removes the last `count` entries added to `table`."""
    for key in list(islice(reversed(table), count)):
        del table[key]


class _IntTable:
    """Numbers for int64 keys, looked up all at once with numpy in a sorted array of the known
    ones: several times faster than a dict lookup per key."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)  # ascending
        self.numbers = np.zeros(0, dtype=np.intp)
        self._before = (self.keys, self.numbers)

    def number(self, keys: npt.NDArray[np.int64], start: int) -> tuple[Index, Index]:
        """The number of each key, adding the new ones numbered from `start` in order of first
        appearance; returns the numbers and where each new key first appears, in number
        order."""
        known, numbers = self._before = self.keys, self.numbers
        at = np.searchsorted(known, keys)
        found = at < len(known)
        found[found] = known[at[found]] == keys[found]
        ids = np.empty(len(keys), dtype=np.intp)
        ids[found] = numbers[at[found]]
        new = np.flatnonzero(~found)
        if not len(new):
            return ids, new
        fresh, first, inverse = np.unique(keys[new], return_index=True, return_inverse=True)
        rank = np.empty(len(fresh), dtype=np.intp)
        rank[np.argsort(first, kind="stable")] = np.arange(len(fresh))
        ids[new] = start + rank[inverse.reshape(-1)]
        where = np.searchsorted(known, fresh)
        self.keys = np.insert(known, where, fresh)
        self.numbers = np.insert(numbers, where, start + rank)
        return ids, new[np.sort(first)]

    def undo(self) -> None:
        """Forgets the keys the last `number` added."""
        self.keys, self.numbers = self._before


def _int_keys(kind: int, values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Int, float or bool values as int64 keys, equal where the values are the same value:
    floats by their bits, with -0.0 as 0.0 and every NaN as one."""
    if kind == INT:
        return values  # type: ignore[return-value]
    if kind == BOOL:
        return values.astype(np.int64)
    floats = values + 0.0  # a copy, and -0.0 + 0.0 is 0.0
    floats[np.isnan(floats)] = np.nan
    return floats.view(np.int64)


class _KeyValues:
    """Numbers for the values of one group-by key, in order of first appearance (`cells`): a
    table per value type, since 1, 1.0, '1' and TRUE are different values (of different
    columns) though equal in Python. NaNs are one value, and -0.0 is 0.0. Strings (and NULL)
    are looked up in a dict, numbers and bools with numpy (`_IntTable`)."""

    def __init__(self) -> None:
        self.cells: list[Cell] = []
        self._strings: dict[int, dict[Any, int]] = {STRING: {}, _NULL: {}}
        self._numbers: dict[int, _IntTable] = {kind: _IntTable() for kind in (INT, FLOAT, BOOL)}
        self._added: list[tuple[int, int]] = []  # (type, how many) added by the last `ids`

    def ids(self, parts: TypedValues, size: int) -> Index:
        """The number of each value of a column split by `_typed_values`."""
        out = np.empty(size, dtype=np.intp)
        self._added = []
        for kind, positions, values in parts:
            if kind in self._numbers:
                ids, first = self._numbers[kind].number(_int_keys(kind, values), len(self.cells))
                fresh: list[Any] = values[first].tolist()
            else:
                ids, fresh = _number(
                    self._strings[kind], [None] if kind == _NULL else values, len(self.cells)
                )
            if fresh:
                self.cells.extend(fresh)
                self._added.append((kind, len(fresh)))
            if positions is None:
                out[:] = ids
            else:
                out[positions] = ids
        return out

    def undo(self) -> None:
        """Forgets the values the last `ids` added."""
        for kind, count in reversed(self._added):
            if kind in self._numbers:
                self._numbers[kind].undo()
            else:
                _forget(self._strings[kind], count)
            del self.cells[len(self.cells) - count :]
        self._added = []


_PACKED_BITS = 63  # of an int64 holding the value numbers of several keys


class _GroupIndex:
    """Global group numbers by key, in order of first appearance. Each key's values are
    numbered (`_KeyValues`); with one key that number is the group. With several, the numbers
    are packed into one int64 while they fit (looked up in an `_IntTable`), else a dict maps
    their tuple to the group. `keys[k]`: the value of key k in each group."""

    def __init__(self, width: int) -> None:
        self.size = 0
        self._values = [_KeyValues() for _ in range(width)]
        self.keys: list[list[Cell]] = (
            [self._values[0].cells] if width == 1 else [[] for _ in range(width)]
        )
        self._bits = _PACKED_BITS // width if width else 0
        self._packed: _IntTable | None = _IntTable()
        self._tuples: dict[tuple[int, ...], int] = {}
        self._slots = np.zeros(0, dtype=np.intp)

    def targets(self, columns: Sequence[plan_pb2.ValueColumn], size: int) -> Index:
        """The global group of each group of a partial's key columns, adding the new ones;
        raises PartialResultError (having added nothing) when they do not hold one key per
        group, each once."""
        parts = [_typed_values(column, size, f"key column {i}") for i, column in enumerate(columns)]
        before = self.size
        if not parts:
            target = np.zeros(size, dtype=np.intp)
            self.size = max(self.size, min(size, 1))
        elif len(parts) == 1:
            target = self._values[0].ids(parts[0], size)
            self.size = len(self.keys[0])
        else:
            ids = [values.ids(p, size) for values, p in zip(self._values, parts, strict=True)]
            target = self._combine(ids)
        if not self._distinct(target):
            self._undo(before)
            raise PartialResultError("a group appears twice in a partial result")
        return target

    def _combine(self, ids: list[Index]) -> Index:
        bits = self._bits
        if self._packed is not None and any(len(v.cells) > 1 << bits for v in self._values):
            # A key has too many values to pack: tuples from now on.
            table, self._packed = self._packed, None
            order = np.argsort(table.numbers)  # the dict in group order, as if built so
            self._tuples = {
                self._unpack(key): number
                for key, number in zip(
                    table.keys[order].tolist(), table.numbers[order].tolist(), strict=True
                )
            }
        if self._packed is not None:
            packed = ids[0].astype(np.int64)
            for column in ids[1:]:
                packed = (packed << bits) | column
            target, first = self._packed.number(packed, self.size)
        else:
            combos = list(zip(*[column.tolist() for column in ids], strict=True))
            target, fresh = _number(self._tuples, combos, self.size)
            new = np.flatnonzero(target >= self.size)
            first = np.zeros(len(fresh), dtype=np.intp)
            first[target[new] - self.size] = new
        # The new groups' keys: their values at their first appearance.
        for cells, values, column in zip(self.keys, self._values, ids, strict=True):
            cells.extend([values.cells[vid] for vid in column[first].tolist()])
        self.size += len(first)
        return target

    def _unpack(self, key: int) -> tuple[int, ...]:
        mask, width = (1 << self._bits) - 1, len(self._values)
        return tuple((key >> (self._bits * (width - 1 - k))) & mask for k in range(width))

    def _distinct(self, target: Index) -> bool:
        # Where several positions write one slot, only the last one reads itself back.
        self._slots = _grow(self._slots, self.size, 0)
        positions = np.arange(len(target), dtype=np.intp)
        self._slots[target] = positions
        return not (self._slots[target] != positions).any()

    def _undo(self, size: int) -> None:
        """Forgets the groups and key values the last `targets` added."""
        for values in self._values:
            values.undo()
        if len(self._values) > 1:
            if self._packed is not None:
                self._packed.undo()
            else:
                _forget(self._tuples, self.size - size)
            for cells in self.keys:
                del cells[size:]
        self.size = size

    def add_empty_key(self) -> None:
        """The one group of a plan without GROUP BY, when no partial brought it."""
        self.size = max(self.size, 1)


# -- merging groups --------------------------------------------------------------------------


def _prepare(plan: plan_pb2.QueryPlan, merged: Merged) -> _GroupIndex:
    if merged.index is None:
        merged.index = _GroupIndex(len(plan.group_by))
        merged.keys = merged.index.keys
        merged.columns = _columns(plan)
    return merged.index


def _merge_groups(plan: plan_pb2.QueryPlan, merged: Merged, groups: plan_pb2.GroupColumns) -> None:
    index = _prepare(plan, merged)
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
    merged.size = index.size
    for column, data in zip(columns, states, strict=True):
        column.merge(target, data, merged.size)


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
            columns.append(Sketches(DistinctState, _distinct_batch))
        else:
            columns.append(Sketches(QuantileState, _quantile_batch(aggregate.quantile)))
    return columns


def _quantile_batch(q: float) -> Callable[[list[list[bytes]]], list[Cell]]:
    def batch(groups: list[list[bytes]]) -> list[Cell]:
        return [values[0] for values in quantiles_of_groups(groups, [q])]

    return batch


def _distinct_batch(groups: list[list[bytes]]) -> list[Cell]:
    return list(distinct_of_groups(groups))


_REPEATED = ("counts", "sums", "int_sums", "float_seen", "sketches")


class Column(ABC):
    """The merged states of one aggregate of the plan, one entry per group number.

    `decode` reads and checks a partial's StateColumn (nothing is merged until every column of
    the partial is checked); `merge` adds it to the groups `target` (distinct numbers)."""

    members: tuple[str, ...] = ()
    """The repeated members of StateColumn this aggregate uses (the others must be empty)."""
    extremes = False
    """Whether it uses StateColumn.extremes."""

    def decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        """A partial's states, checked to fit: one entry per group in each member used."""
        for name in _REPEATED:
            found, expected = len(getattr(state, name)), size if name in self.members else 0
            if found != expected:
                raise PartialResultError(f"{what} has {found} {name}, expected {expected}")
        if not self.extremes and state.HasField("extremes") and len(state.extremes.types):
            raise PartialResultError(f"{what} has extremes, expected none")
        return self._decode(state, size, what)

    @abstractmethod
    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any: ...

    @abstractmethod
    def merge(self, target: Index, data: Any, size: int) -> None:
        """Merge a partial's decoded states into groups `target`; `size` groups in all."""

    @abstractmethod
    def resize(self, size: int) -> None:
        """Make room for `size` groups, the new ones without any state."""

    @abstractmethod
    def finals(self, positions: Positions) -> list[Cell]:
        """The SQL values of the aggregate in these groups."""


class _ExactSums:
    """Exact per-group sums of int64 values: an int64 array while no sum can overflow, Python
    ints (an object array) from then on."""

    def __init__(self) -> None:
        self.values: npt.NDArray[Any] = np.zeros(0, dtype=np.int64)
        self._bound = 0  # no entry's magnitude exceeds it

    def resize(self, size: int) -> None:
        self.values = _grow(self.values, size, 0)

    def add(self, target: Index, values: npt.NDArray[np.int64], size: int) -> None:
        self.resize(size)
        if self.values.dtype != object:
            bound = _bound(values)
            if self._bound + bound >= 2**63:
                self._bound = _bound(self.values)
                if self._bound + bound >= 2**63:
                    self.values = self.values.astype(object)
            self._bound += bound
        if self.values.dtype == object:
            self.values[target] += values.astype(object)
        else:
            self.values[target] += values


def _bound(values: npt.NDArray[Any]) -> int:
    return max(-int(values.min()), int(values.max())) if len(values) else 0


class Counts(Column):
    """COUNT and COUNT_FIELD: the sum of the counts."""

    members = ("counts",)

    def __init__(self) -> None:
        self.counts = _ExactSums()

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        return np.asarray(state.counts, dtype=np.int64)

    def merge(self, target: Index, data: Any, size: int) -> None:
        self.counts.add(target, data, size)

    def resize(self, size: int) -> None:
        self.counts.resize(size)

    def finals(self, positions: Positions) -> list[Cell]:
        return self.counts.values[positions].tolist()  # type: ignore[no-any-return]


class Sums(Column):
    """SUM and AVG over int and float values (see plan.proto's StateColumn).

    Counts and int sums are summed exactly (int64, or Python ints where that could overflow).
    The float sums of the partials are added up exactly rounded (as math.fsum does), so that the
    answer does not depend on the order in which partials arrive: with numpy, each group keeps
    a sum and the exact errors of its additions (Knuth's TwoSum) summed in a second float; while
    that second sum is exact too, sum + errors is the exact total and one addition rounds it
    correctly. Where it was not (errors spanning more than 53 bits, or ±inf and NaN), the
    group's float sums, kept aside, go through math.fsum."""

    members = ("counts", "sums", "int_sums", "float_seen")

    def __init__(self, average: bool) -> None:
        self.average = average
        self.counts = _ExactSums()
        self.int_sums = _ExactSums()
        self.seen = np.zeros(0, dtype=bool)
        self._sums = np.zeros(0, dtype=np.float64)
        self._errors = np.zeros(0, dtype=np.float64)
        self._inexact = np.zeros(0, dtype=bool)
        # Every partial's nonzero float sums, by group: for the groups left inexact.
        self._floats: list[tuple[Index, npt.NDArray[np.float64]]] = []

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        return (
            np.asarray(state.counts, dtype=np.int64),
            np.asarray(state.int_sums, dtype=np.int64),
            np.asarray(state.float_seen, dtype=bool),
            np.asarray(state.sums, dtype=np.float64),
        )

    def resize(self, size: int) -> None:
        self.counts.resize(size)
        self.int_sums.resize(size)
        self.seen = _grow(self.seen, size, False)
        self._sums = _grow(self._sums, size, 0.0)
        self._errors = _grow(self._errors, size, 0.0)
        self._inexact = _grow(self._inexact, size, False)

    def merge(self, target: Index, data: Any, size: int) -> None:
        counts, int_sums, seen, sums = data
        self.counts.add(target, counts, size)
        self.int_sums.add(target, int_sums, size)
        self.resize(size)
        self.seen[target] |= seen
        # Zeros change no sum (nor its sign: see finals).
        nonzero = np.flatnonzero(sums != 0)
        if len(nonzero) == 0:
            return
        if len(nonzero) < len(sums):
            target, sums = target[nonzero], sums[nonzero]
        self._floats.append((target, sums))
        total, error = _two_sum(self._sums[target], sums)
        errors, inexact = _two_sum(self._errors[target], error)
        self._sums[target] = total
        self._errors[target] = errors
        # NaN != 0 too: an inf or NaN anywhere makes the group inexact.
        self._inexact[target] |= inexact != 0

    def float_sums(self, positions: Positions) -> npt.NDArray[np.float64]:
        """These groups' float sums added up, exactly rounded (math.fsum)."""
        totals = self._sums[positions] + self._errors[positions]
        inexact = np.flatnonzero(self._inexact[positions])
        if len(inexact):
            groups = np.arange(len(self._sums))[positions][inexact]
            values: dict[int, list[float]] = {group: [] for group in groups.tolist()}
            for target, sums in self._floats:
                keep = np.flatnonzero(self._inexact[target])
                for group, value in zip(target[keep].tolist(), sums[keep].tolist(), strict=True):
                    if group in values:
                        values[group].append(value)
            totals[inexact] = [_fsum(values[group]) for group in groups.tolist()]
        return totals

    def finals(self, positions: Positions) -> list[Cell]:
        counts = self.counts.values[positions]
        int_sums = self.int_sums.values[positions]
        seen = self.seen[positions]
        out = np.full(len(counts), None, dtype=object)
        present = counts != 0
        ints = np.flatnonzero(present & ~seen)
        floats = np.flatnonzero(present & seen)
        if len(floats):
            # float(int_sum) + float_sum, as a float: -0.0 becomes 0.0 there.
            totals = _as_floats(int_sums[floats]) + self.float_sums(positions)[floats]
            out[floats] = totals / _as_floats(counts[floats]) if self.average else totals
        if len(ints):
            int_sums, counts = int_sums[ints], counts[ints]
            if not self.average:
                out[ints] = int_sums
            elif int_sums.dtype != object and counts.dtype != object:
                # int / int exactly rounded: in numpy where both convert to float exactly.
                exact = (int_sums <= _EXACT_FLOAT) & (int_sums >= -_EXACT_FLOAT)
                exact &= counts <= _EXACT_FLOAT
                out[ints[exact]] = int_sums[exact] / counts[exact]
                rest = np.flatnonzero(~exact)
                out[ints[rest]] = _divide(int_sums[rest], counts[rest])
            else:
                out[ints] = _divide(int_sums, counts)
        return out.tolist()  # type: ignore[no-any-return]


def _two_sum(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """a + b rounded, and its rounding error: exactly a + b in all (without overflow)."""
    with np.errstate(over="ignore", invalid="ignore"):  # ±inf and NaN: inexact (see Sums)
        total = a + b
        b_part = total - a
        return total, (a - (total - b_part)) + (b - b_part)


def _fsum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        # inf - inf, or a sum beyond floats: IEEE arithmetic in an order that does not depend
        # on the partials' (NaN or ±inf).
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.sum(np.sort(values)))


def _as_floats(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Each int as the nearest float (Python's float(int) for Python ints)."""
    if values.dtype == object:
        return np.array([float(x) for x in values.tolist()], dtype=np.float64)
    return values.astype(np.float64)


def _divide(numerators: npt.NDArray[Any], denominators: npt.NDArray[Any]) -> list[float]:
    """int / int, exactly rounded, in Python."""
    return [
        int(a) / int(b) for a, b in zip(numerators.tolist(), denominators.tolist(), strict=True)
    ]


class _Best:
    """Per group, for one value type: whether a value was seen, and the best one."""

    def __init__(self, dtype: Any, fill: Any) -> None:
        self.fill = fill
        self.has = np.zeros(0, dtype=bool)
        self.best: npt.NDArray[Any] = np.full(0, fill, dtype=dtype)

    def resize(self, size: int) -> None:
        self.has = _grow(self.has, size, False)
        self.best = _grow(self.best, size, self.fill)


class Extremes(Column):
    """MIN and MAX: over the numbers when the group has any (ints and floats compared as
    numbers, exactly; the winner keeps its type, an int on a tie), else over strings, else over
    bools. NaN never wins against a number (like fmin/fmax): only a group of NaN gives NaN."""

    extremes = True

    def __init__(self, maximum: bool) -> None:
        self.maximum = maximum
        self.ints = _Best(np.int64, 0)
        self.floats = _Best(np.float64, np.nan)
        self.strings = _Best(object, "")
        self.bools = _Best(np.bool_, False)
        self._by_type = {INT: self.ints, FLOAT: self.floats, STRING: self.strings, BOOL: self.bools}

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        return _typed_values(state.extremes, size, what)

    def resize(self, size: int) -> None:
        for best in self._by_type.values():
            best.resize(size)

    def merge(self, target: Index, data: Any, size: int) -> None:
        self.resize(size)
        for kind, positions, values in data:
            if kind == _NULL:
                continue
            groups = target if positions is None else target[positions]
            best = self._by_type[kind]
            if kind == FLOAT:
                # fmin/fmax skip NaN (the fill of groups without a float).
                pick = np.fmax if self.maximum else np.fmin
                best.best[groups] = pick(best.best[groups], values)
            else:
                if kind == STRING:
                    strings = np.empty(len(values), dtype=object)
                    strings[:] = values
                    values = strings
                current = best.best[groups]
                better = values > current if self.maximum else values < current
                better |= ~best.has[groups]
                best.best[groups[better]] = values[better]
            best.has[groups] = True

    def finals(self, positions: Positions) -> list[Cell]:
        ints, floats = self.ints.best[positions], self.floats.best[positions]
        has_int, has_float = self.ints.has[positions], self.floats.has[positions]
        has_string = self.strings.has[positions]
        # Numbers beat strings and strings beat bools.
        is_float = has_float & ~(has_int & ~_float_wins(floats, ints, self.maximum))
        is_int = has_int & ~is_float
        has_number = has_int | has_float
        is_string = has_string & ~has_number
        is_bool = self.bools.has[positions] & ~has_number & ~has_string
        out = np.full(len(ints), None, dtype=object)
        out[is_int] = ints[is_int]
        out[is_float] = floats[is_float]
        out[is_string] = self.strings.best[positions][is_string]
        out[is_bool] = self.bools.best[positions][is_bool]
        return out.tolist()  # type: ignore[no-any-return]


def _float_wins(
    floats: npt.NDArray[np.float64], ints: npt.NDArray[np.int64], maximum: bool
) -> npt.NDArray[np.bool_]:
    """Where a group's best float beats its best int: strictly better, compared exactly (NaN
    never is). 1 and 1.0 tie: the int stays, so the answer does not depend on arrival order."""
    rounded = ints.astype(np.float64)
    wins: npt.NDArray[np.bool_] = floats > rounded if maximum else floats < rounded
    # An int beyond 2**53 can round onto the float: those compare exactly, in Python.
    ties = np.flatnonzero((floats == rounded) & ((ints > _EXACT_FLOAT) | (ints < -_EXACT_FLOAT)))
    for i, f, x in zip(ties.tolist(), floats[ties].tolist(), ints[ties].tolist(), strict=True):
        wins[i] = f > x if maximum else f < x
    return wins


_State = TypeVar("_State", DistinctState, QuantileState)

# Partial sketch states kept per group before they are merged into one, bounding memory when
# many partitions answer.
_FOLD_AT = 64


class Sketches(Column):
    """COUNT_DISTINCT and PERCENTILE: the serialized states of each group's partials, finalized
    for all the groups asked about at once by flakehouse.sketches' vectorized batch functions.
    A malformed state is reported then, or when a group holds too many to keep (they are
    folded into one every _FOLD_AT).

    An entry is the bytes of a group's state from its first partial, and a list of serialized
    states (and decoded ones, once folded) when more arrive."""

    members = ("sketches",)

    def __init__(
        self,
        kind: type[_State],
        batch: Callable[[list[list[bytes]]], list[Cell]],
    ) -> None:
        self.entries: list[Any] = []
        self.kind: Any = kind
        # Many groups' serialized states → their final values, vectorized (flakehouse.sketches).
        self.batch = batch

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        return state.sketches[:]

    def resize(self, size: int) -> None:
        if len(self.entries) < size:
            self.entries.extend([b""] * (size - len(self.entries)))

    def merge(self, target: Index, data: Any, size: int) -> None:
        known = len(self.entries)
        old = np.flatnonzero(target < known).tolist()
        if len(old) < len(data):
            # The groups new with this partial are numbered known, known + 1, ...
            new = np.flatnonzero(target >= known)
            self.entries.extend([data[i] for i in new[np.argsort(target[new])].tolist()])
        for i, index in zip(old, target[old].tolist(), strict=True):
            self._add(index, data[i])

    def _parts(self, index: int) -> list[Any]:
        entry = self.entries[index]
        if type(entry) is bytes:
            entry = self.entries[index] = [entry] if entry else []
        return entry  # type: ignore[no-any-return]

    def _add(self, index: int, data: bytes) -> None:
        parts = self._parts(index)
        if not data:
            return
        parts.append(data)
        if len(parts) > _FOLD_AT:
            self.entries[index] = [self._merge(parts).to_bytes()]

    def _merge(self, parts: list[Any]) -> Any:
        states = [self._decode_state(part) if isinstance(part, bytes) else part for part in parts]
        if not states:
            return self.kind.empty()
        # States are immutable: one needs no merge.
        return states[0] if len(states) == 1 else self.kind.merge_all(states)

    def _decode_state(self, data: bytes) -> Any:
        try:
            return self.kind.from_bytes(data)
        except SketchFormatError as exc:
            raise PartialResultError(f"bad sketch in a partial result: {exc}") from None

    def finals(self, positions: Positions) -> list[Cell]:
        if isinstance(positions, slice):
            indexes: Iterable[int] = range(len(self.entries))[positions]
        else:
            indexes = positions.tolist()
        groups = [self._parts(i) for i in indexes]
        try:
            return self.batch(groups)
        except SketchFormatError as exc:
            raise PartialResultError(f"bad sketch in a partial result: {exc}") from None


# -- the answer ------------------------------------------------------------------------------


def to_response(
    planned: PlannedQuery, merged: Merged, *, columnar: bool = False
) -> query_pb2.QueryResponse:
    """A QueryResponse holding the answer's columns (typed when the values agree) and rows, or
    with `columnar` their values column by column (`column_values`); the caller sets the rest.
    Rows are parsed from their serialized form straight into it (no Row messages copied)."""
    rows_of = _aggregate_columns if planned.is_aggregate else _raw_columns
    cells, kinds, columns = [], [], []
    for name, column in zip(planned.columns, rows_of(planned, merged), strict=True):
        column, value_type, column_kinds = _typed(column)
        cells.append(column)
        kinds.append(column_kinds)
        columns.append(query_pb2.ResultColumn(name=name, type=value_type))
    response = query_pb2.QueryResponse(columns=columns)
    if columnar:
        response.column_values.extend(
            to_value_column(_plain(c, k)) for c, k in zip(cells, kinds, strict=True)
        )
    else:
        response.MergeFromString(_rows(cells, kinds))
    return response


def finalize(
    planned: PlannedQuery, merged: Merged
) -> tuple[list[query_pb2.ResultColumn], list[events_pb2.Row]]:
    """The answer's result columns and rows (`to_response`, as lists)."""
    response = to_response(planned, merged)
    return list(response.columns), list(response.rows)


def _aggregate_columns(planned: PlannedQuery, merged: Merged) -> list[list[Cell]]:
    """The output columns of an aggregate query, a list of cells each."""
    plan = planned.plan
    index = _prepare(plan, merged)
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
        self.size = merged.size
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


def _typed(cells: list[Cell]) -> tuple[list[Cell], events_pb2.ValueType.ValueType, set[type]]:
    """The column as answered, its type (the single type of its non-null values, else
    unspecified), and the Python types of its cells."""
    kinds = _types(cells)
    if int in kinds:
        # A Value holds int64: an exact int sum beyond it is answered as the nearest float.
        ints: list[int] = cells if len(kinds) == 1 else [c for c in cells if type(c) is int]  # type: ignore[assignment,misc]
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


def _rows(columns: list[list[Cell]], kinds: list[set[type]]) -> bytes:
    """Rows of Values (`kinds`: the Python types in each column) as a serialized QueryResponse
    holding nothing else, encoded a column at a time with numpy (`_RowEncoder`), which protobuf
    parses in C; far faster than a message per row and value."""
    if not columns or not columns[0]:
        return b""
    encoder = _RowEncoder(len(columns[0]), len(columns))
    row_sizes = np.zeros(len(columns[0]), dtype=np.int64)
    for i, (cells, column_kinds) in enumerate(zip(columns, kinds, strict=True)):
        if not column_kinds <= _PLAIN:
            cells = _plain(cells, column_kinds)
            column_kinds = _types(cells)
        row_sizes += encoder.column(i, cells, column_kinds)
    return encoder.payload(row_sizes)


_PLAIN = {str, int, float, bool, type(None)}


def _plain(cells: list[Cell], kinds: set[type]) -> list[Cell]:
    """Subclasses of the scalar types (not encoded as such) as the types themselves."""
    if kinds <= _PLAIN:
        return cells
    return [None if c is None else from_value(to_value(c)) for c in cells]


# Wire format (protobuf encoding) of QueryResponse.rows: each row is field 2 (tag 0x12), each
# of its Values field 1 of Row (tag 0x0a); in a Value, string_value is field 1 (0x0a),
# int_value 2 (varint, 0x10), float_value 3 (fixed64, 0x19), bool_value 4 (varint, 0x20), and
# null is an empty Value. The constant bytes below are the start of the encoder's source.
_CONSTANTS = np.frombuffer(b"\x0a\x12\x10\x19\x20\x00\x01", dtype=np.uint8)
_VALUE_TAG, _ROW_TAG, _INT_TAG, _FLOAT_TAG, _BOOL_TAG, _FALSE, _TRUE = range(7)
_STRING_TAG = _VALUE_TAG
_SLOTS = 5  # per Value: its tag in Row, its length, its member's tag, payload, string bytes


class _RowEncoder:
    """The serialized rows of a QueryResponse, assembled with numpy: every piece (a tag, a
    varint, a float's bytes, a string's UTF-8) is a slice of one source buffer, and each row a
    fixed number of slots, each a (start, length) in that buffer (length 0: unused). The output
    gathers all slots in order, at once."""

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self._chunks: list[npt.NDArray[np.uint8]] = [_CONSTANTS]
        self._end = len(_CONSTANTS)
        self.starts = np.zeros((size, 2 + _SLOTS * width), dtype=np.int64)
        self.lengths = np.zeros((size, 2 + _SLOTS * width), dtype=np.int64)

    def _source(self, data: npt.NDArray[np.uint8]) -> int:
        """Appends bytes to the source; returns where they start."""
        start = self._end
        self._chunks.append(data.reshape(-1))
        self._end += data.size
        return start

    def _constant(self, rows: Any, slot: int, which: Any) -> None:
        self.starts[rows, slot] = which
        self.lengths[rows, slot] = 1

    def _varints(self, rows: Any, slot: int, values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """`values` (as unsigned 64-bit ints) as varints in slot `slot` of `rows`; returns their
        lengths."""
        encoded, lengths = _varints(values)
        start = self._source(encoded)
        self.starts[rows, slot] = start + np.arange(len(values)) * encoded.shape[1]
        self.lengths[rows, slot] = lengths
        return lengths

    def column(self, index: int, cells: list[Cell], kinds: set[type]) -> npt.NDArray[np.int64]:
        """Encodes output column `index` (`kinds`: the types of its cells); returns the bytes it
        takes in each row."""
        slot = 2 + _SLOTS * index
        sizes = np.zeros(self.size, dtype=np.int64)  # of each Value
        parts: list[tuple[type, Any, list[Any]]]
        if len(kinds) == 1:
            parts = [(next(iter(kinds)), slice(None), cells)]
        else:
            positions: dict[type, list[int]] = {}
            for i, cell in enumerate(cells):
                positions.setdefault(type(cell), []).append(i)
            parts = [
                (kind, np.array(rows, dtype=np.intp), [cells[i] for i in rows])
                for kind, rows in positions.items()
            ]
        for kind, rows, values in parts:
            count = len(values)
            if kind is str:
                text = "".join(values)
                data = text.encode()
                if len(data) == len(text):  # ASCII: a character is a byte
                    lengths = np.fromiter(map(len, values), dtype=np.int64, count=count)
                else:
                    lengths = np.fromiter(
                        (len(value.encode()) for value in values), dtype=np.int64, count=count
                    )
                start = self._source(np.frombuffer(data, dtype=np.uint8))
                self._constant(rows, slot + 2, _STRING_TAG)
                header = self._varints(rows, slot + 3, lengths)
                self.starts[rows, slot + 4] = start + np.cumsum(lengths) - lengths
                self.lengths[rows, slot + 4] = lengths
                sizes[rows] = 1 + header + lengths
            elif kind is int:
                self._constant(rows, slot + 2, _INT_TAG)
                ints = np.array(values, dtype=np.int64).view(np.uint64)
                sizes[rows] = 1 + self._varints(rows, slot + 3, ints)
            elif kind is float:
                self._constant(rows, slot + 2, _FLOAT_TAG)
                start = self._source(np.array(values, dtype="<f8").view(np.uint8))
                self.starts[rows, slot + 3] = start + np.arange(count) * 8
                self.lengths[rows, slot + 3] = 8
                sizes[rows] = 9
            elif kind is bool:
                self._constant(rows, slot + 2, _BOOL_TAG)
                flags = np.array(values, dtype=bool)
                self._constant(rows, slot + 3, np.where(flags, _TRUE, _FALSE))
                sizes[rows] = 2
            # None: an empty Value.
        self._constant(slice(None), slot, _VALUE_TAG)
        return 1 + self._varints(slice(None), slot + 1, sizes) + sizes

    def payload(self, row_sizes: npt.NDArray[np.int64]) -> bytes:
        """The serialized QueryResponse, given the bytes of each row's values."""
        self._constant(slice(None), 0, _ROW_TAG)
        self._varints(slice(None), 1, row_sizes)
        starts, lengths = self.starts.reshape(-1), self.lengths.reshape(-1)
        ends = np.cumsum(lengths)
        # Byte i of slot s comes from starts[s] + (i - where s starts in the output).
        index = np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]))
        return np.concatenate(self._chunks)[index].tobytes()


def _varints(values: npt.NDArray[Any]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Protobuf varints of `values` as unsigned 64-bit ints: a byte matrix holding each one
    left-aligned in its row, and their lengths."""
    unsigned = values.astype(np.uint64)
    lengths = np.ones(len(unsigned), dtype=np.int64)
    rest = unsigned >> np.uint64(7)
    while rest.any():
        lengths += rest != 0
        rest >>= np.uint64(7)
    width = int(lengths.max()) if len(lengths) else 1
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    encoded = ((unsigned[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    if width > 1:
        encoded[np.arange(width) < (lengths - 1)[:, None]] |= 0x80  # more bytes follow
    return encoded, lengths
