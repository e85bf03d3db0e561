"""GROUP BY and the mergeable aggregate states of plan.proto, vectorized: each segment's rows get
a local group index (numpy), each local group is mapped once to a global group, and aggregate
arrays are merged by fancy indexing. Python loops run per group, never per row."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, MutableSequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events import values as v
from flakehouse.storage.predicate import Index, ScanSegment
from flakehouse.storage.segment import TIMESTAMP, ColumnView

F = plan_pb2.AggregateFunction
KeyItem = tuple[int, Any] | None
"""One group-key component: (ValueType, Python scalar), or None for null. The type is part of the
key because 1, 1.0 and True are equal (and hash alike) in Python but are different Values."""
GroupKey = tuple[KeyItem, ...]

_NAN = float("nan")  # one NaN object: tuples compare items by identity first, so NaN keys merge
# Code ranges up to this size are counted with bincount instead of sorted with np.unique.
_DENSE_LIMIT = 1 << 16
_I64 = np.iinfo(np.int64)


# -- group keys ----------------------------------------------------------------------------------


@dataclass
class _KeyCodes:
    """One group-by key over the selected rows of a segment: a code per row, the code range, and
    how to turn codes back into key items."""

    codes: npt.NDArray[np.int64]
    cardinality: int
    decode: Callable[[npt.NDArray[np.int64]], list[KeyItem]]


def _field_key(seg: ScanSegment, field: str, sel: Index) -> _KeyCodes:
    """Code 0 is null; then, per type present, one code range for that type's distinct values."""
    selected = np.zeros(seg.n, dtype=bool)
    selected[sel] = True
    full = np.zeros(seg.n, dtype=np.int64)
    pieces: list[tuple[int, int, npt.NDArray[Any]]] = []
    offset = 1
    for kind, col in sorted(seg.columns(field).items()):
        keep = selected[col.rows]
        rows = col.rows[keep]
        if len(rows) == 0:
            continue
        if kind == v.STRING:
            assert col.codes is not None and col.dictionary is not None
            full[rows] = offset + col.codes[keep].astype(np.int64)
            domain: npt.NDArray[Any] = col.dictionary
        elif kind == v.BOOL:
            assert col.values is not None
            full[rows] = offset + col.values[keep].astype(np.int64)
            domain = np.array([False, True])
        else:
            assert col.values is not None
            domain, inverse = np.unique(col.values[keep], return_inverse=True)
            full[rows] = offset + inverse.reshape(-1)
        pieces.append((offset, kind, domain))
        offset += len(domain)

    def decode(codes: npt.NDArray[np.int64]) -> list[KeyItem]:
        out: list[KeyItem] = [None] * len(codes)
        for start, kind, domain in pieces:
            idx = np.flatnonzero((codes >= start) & (codes < start + len(domain)))
            items = domain[codes[idx] - start].tolist()
            if kind == v.FLOAT:
                items = [_NAN if x != x else x for x in items]
            for i, item in zip(idx.tolist(), items, strict=True):
                out[i] = (kind, item)
        return out

    return _KeyCodes(full[sel], offset, decode)


def _bucket_key(seg: ScanSegment, width: int, sel: Index) -> _KeyCodes:
    """time_bucket: floor(ts / width) * width, coded relative to the smallest bucket."""
    quotient = np.floor_divide(seg.timestamps[sel], width)
    low, high = int(quotient.min()), int(quotient.max())
    span = high - low + 1
    if span <= max(2 * len(sel), _DENSE_LIMIT):
        return _KeyCodes(
            (quotient - low).astype(np.int64),
            span,
            lambda codes: [(v.INT, (low + c) * width) for c in codes.tolist()],
        )
    uniq, inverse = np.unique(quotient, return_inverse=True)
    return _KeyCodes(
        inverse.reshape(-1).astype(np.int64),
        len(uniq),
        lambda codes: [(v.INT, int(q) * width) for q in uniq[codes].tolist()],
    )


def _groups(plan: plan_pb2.QueryPlan, seg: ScanSegment, sel: Index) -> tuple[Index, list[GroupKey]]:
    """Local group index (0..G-1) of every selected row, and the key of each local group."""
    if not plan.group_by:
        return np.zeros(len(sel), dtype=np.intp), [()]
    parts = [
        _field_key(seg, k.field, sel)
        if k.WhichOneof("kind") == "field"
        else _bucket_key(seg, k.time_bucket_us, sel)
        for k in plan.group_by
    ]
    total = math.prod(p.cardinality for p in parts)
    if total < 2**62:
        # Mixed-radix code of the whole key, then dense group numbers.
        combined = parts[0].codes
        for p in parts[1:]:
            combined = combined * p.cardinality + p.codes
        if total <= max(4 * len(sel), _DENSE_LIMIT):
            used = np.flatnonzero(np.bincount(combined, minlength=total))
            remap = np.empty(total, dtype=np.intp)
            remap[used] = np.arange(len(used))
            group, distinct = remap[combined], used.astype(np.int64)
        else:
            distinct, inverse = np.unique(combined, return_inverse=True)
            group = inverse.reshape(-1)
        components: list[npt.NDArray[np.int64]] = []
        rest = distinct
        for p in reversed(parts[1:]):
            components.append(rest % p.cardinality)
            rest = rest // p.cardinality
        components.append(rest)
        components.reverse()
    else:
        stacked = np.stack([p.codes for p in parts], axis=1)
        distinct_rows, inverse = np.unique(stacked, axis=0, return_inverse=True)
        group = inverse.reshape(-1)
        components = [distinct_rows[:, i] for i in range(len(parts))]
    decoded = [p.decode(c) for p, c in zip(parts, components, strict=True)]
    return group.astype(np.intp, copy=False), list(zip(*decoded, strict=True))


# -- aggregators ---------------------------------------------------------------------------------


@dataclass
class SegmentGroups:
    """One segment's share of an aggregation: its selected rows, their local group, and the
    global group of every local group (distinct: each local group maps to its own)."""

    seg: ScanSegment
    sel: Index
    group: Index
    n_local: int
    target: Index
    n_global: int
    _row_group: Index | None = None

    def row_group(self) -> Index:
        """Local group of every segment row, -1 where the row is not selected."""
        if self._row_group is None:
            self._row_group = np.full(self.seg.n, -1, dtype=np.intp)
            self._row_group[self.sel] = self.group
        return self._row_group

    def column(self, col: ColumnView) -> tuple[Index, npt.NDArray[np.bool_]]:
        """Local group of each selected value of `col`, and which of its values are selected."""
        groups = self.row_group()[col.rows]
        keep = groups >= 0
        return groups[keep], keep

    def counts(self, groups: Index) -> npt.NDArray[np.int64]:
        return np.bincount(groups, minlength=self.n_local)


def _grow(array: npt.NDArray[Any], n: int, fill: Any) -> npt.NDArray[Any]:
    """`array` with room for n groups (amortized doubling); new slots hold `fill`."""
    if len(array) >= n:
        return array
    grown = np.full(max(n, 2 * len(array), 16), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


StateFields = dict[str, Any]
"""Keyword arguments of one AggregateState: filling protobuf messages in place through
`add(**fields)` is about twice as fast as building and copying them, and output size is
the number of groups."""


class Aggregator(Protocol):
    """One aggregate of the plan, accumulated over global groups 0..n-1."""

    def add(self, part: SegmentGroups) -> None: ...
    def states(self, n: int) -> list[StateFields]: ...


class _Count:
    """COUNT (rows) and COUNT_FIELD (rows where the field has a value of any type)."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field if agg.function == F.AGGREGATE_FUNCTION_COUNT_FIELD else None
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, part: SegmentGroups) -> None:
        if self.field is None or self.field == TIMESTAMP:
            local = part.counts(part.group)
        else:
            local = np.zeros(part.n_local, dtype=np.int64)
            for col in part.seg.columns(self.field).values():
                local += part.counts(part.column(col)[0])
        self.counts = _grow(self.counts, part.n_global, 0)
        self.counts[part.target] += local

    def states(self, n: int) -> list[StateFields]:
        self.counts = _grow(self.counts, n, 0)
        return [{"count": c} for c in self.counts[:n].tolist()]


def _bound(values: npt.NDArray[Any]) -> int:
    return max(-int(values.min()), int(values.max())) if len(values) else 0


def _int_sums(values: npt.NDArray[np.int64], groups: Index, n: int) -> npt.NDArray[Any]:
    """Exact per-group sums of int64 values: int64 when no sum can overflow, else Python ints
    (an object array)."""
    if _bound(values) * len(values) < 2**63:
        sums = np.zeros(n, dtype=np.int64)
        np.add.at(sums, groups, values)
        return sums
    big = np.zeros(n, dtype=object)
    np.add.at(big, groups, values.astype(object))
    return big


class _Sum:
    """SUM and AVG share one state (the query service divides for AVG): exact int_sum of the int
    values, float sum of the float values, float_seen, and count of numeric values."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field
        self.int_sums: npt.NDArray[Any] = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros(0, dtype=np.float64)
        self.seen = np.zeros(0, dtype=bool)
        self.counts = np.zeros(0, dtype=np.int64)

    def _reserve(self, n: int) -> None:
        self.int_sums = _grow(self.int_sums, n, 0)
        self.sums = _grow(self.sums, n, 0.0)
        self.seen = _grow(self.seen, n, False)
        self.counts = _grow(self.counts, n, 0)

    def add(self, part: SegmentGroups) -> None:
        target = part.target
        self._reserve(part.n_global)
        columns = part.seg.columns(self.field)
        col = columns.get(v.INT)
        if col is not None:
            assert col.values is not None
            groups, keep = part.column(col)
            local = _int_sums(col.values[keep], groups, part.n_local)
            if self.int_sums.dtype != object and (
                local.dtype == object or _bound(self.int_sums) + _bound(local) >= 2**63
            ):
                # From here on Python ints: exact whatever the magnitude.
                self.int_sums = self.int_sums.astype(object)
            self.int_sums[target] += local
            self.counts[target] += part.counts(groups)
        col = columns.get(v.FLOAT)
        if col is not None:
            assert col.values is not None
            groups, keep = part.column(col)
            local_counts = part.counts(groups)
            self.sums[target] += np.bincount(
                groups, weights=col.values[keep], minlength=part.n_local
            )
            self.seen[target] |= local_counts > 0
            self.counts[target] += local_counts

    def states(self, n: int) -> list[StateFields]:
        self._reserve(n)
        out: list[StateFields] = []
        for int_sum, total, seen, count in zip(
            self.int_sums[:n].tolist(),
            self.sums[:n].tolist(),
            self.seen[:n].tolist(),
            self.counts[:n].tolist(),
            strict=True,
        ):
            int_sum = int(int_sum)
            if not _I64.min <= int_sum <= _I64.max:
                # sint64 cannot carry it: the exact int sum degrades to a float, as in SQL
                # engines without 128-bit integers.
                total, int_sum, seen = total + float(int_sum), 0, True
            out.append({"count": count, "sum": total, "int_sum": int_sum, "float_seen": seen})
        return out


class _Best:
    """Per global group: whether a value was seen, and the best one, for one value type."""

    def __init__(self, dtype: Any, fill: Any, better: Callable[[Any, Any], Any]) -> None:
        self.fill = fill
        self.better = better
        self.has = np.zeros(0, dtype=bool)
        self.best: npt.NDArray[Any] = np.full(0, fill, dtype=dtype)

    def reserve(self, n: int) -> None:
        self.has = _grow(self.has, n, False)
        self.best = _grow(self.best, n, self.fill)

    def merge(
        self, n: int, target: Index, has: npt.NDArray[np.bool_], best: npt.NDArray[Any]
    ) -> None:
        self.reserve(n)
        take = has & (~self.has[target] | self.better(best, self.best[target]))
        self.has[target[take]] = True
        self.best[target[take]] = best[take]


def _float_better(is_min: bool) -> Callable[[Any, Any], Any]:
    """New beats old when strictly better, or old is NaN and new is not (NaN loses, as in
    fmin/fmax)."""
    cmp = np.less if is_min else np.greater

    def better(new: Any, old: Any) -> Any:
        return cmp(new, old) | (np.isnan(old) & ~np.isnan(new))

    return better


def beats(new: tuple[int, Any], old: tuple[int, Any], is_min: bool) -> bool:
    """Whether numeric `new` replaces `old` as the extreme. Python compares int with float
    exactly; NaN loses to any number; on a tie between an int and a float the int wins, so the
    merge order never changes the answer's type."""
    new_value, old_value = new[1], old[1]
    if new_value != new_value:
        return False
    if old_value != old_value:
        return True
    if new_value == old_value:
        return bool(new[0] == v.INT and old[0] == v.FLOAT)
    return bool(new_value < old_value if is_min else new_value > old_value)


class _Extreme:
    """MIN and MAX: over the numbers when the group has any (ints and floats compared as
    numbers, the winner keeps its type), else over strings, else over bools."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field
        self.is_min = is_min = agg.function == F.AGGREGATE_FUNCTION_MIN
        cmp = np.less if is_min else np.greater
        self.ints = _Best(np.int64, 0, cmp)
        self.floats = _Best(np.float64, np.nan, _float_better(is_min))
        self.strings = _Best(object, "", cmp)
        self.bools = _Best(np.int8, 0, cmp)

    def _local(
        self, part: SegmentGroups, col: ColumnView, values: npt.NDArray[Any], fill: Any
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[Any]]:
        groups, keep = part.column(col)
        best = np.full(part.n_local, fill, dtype=values.dtype)
        # fmin/fmax skip NaN, so a NaN never hides the numbers of its group.
        ufunc: np.ufunc
        if values.dtype.kind == "f":
            ufunc = np.fmin if self.is_min else np.fmax
        else:
            ufunc = np.minimum if self.is_min else np.maximum
        ufunc.at(best, groups, values[keep])
        return part.counts(groups) > 0, best

    def add(self, part: SegmentGroups) -> None:
        n, target = part.n_global, part.target
        columns = part.seg.columns(self.field)
        col = columns.get(v.INT)
        if col is not None:
            assert col.values is not None
            fill = _I64.max if self.is_min else _I64.min
            self.ints.merge(n, target, *self._local(part, col, col.values, fill))
        col = columns.get(v.FLOAT)
        if col is not None:
            assert col.values is not None
            self.floats.merge(n, target, *self._local(part, col, col.values, np.nan))
        col = columns.get(v.STRING)
        if col is not None:
            assert col.codes is not None and col.dictionary is not None
            # Codes order like strings: the best code is the best string.
            fill = _I64.max if self.is_min else -1
            has, code = self._local(part, col, col.codes.astype(np.int64), fill)
            strings = np.full(part.n_local, "", dtype=object)
            strings[has] = col.dictionary[code[has]]
            self.strings.merge(n, target, has, strings)
        col = columns.get(v.BOOL)
        if col is not None:
            assert col.values is not None
            fill = 2 if self.is_min else -1
            self.bools.merge(n, target, *self._local(part, col, col.values.astype(np.int8), fill))

    def states(self, n: int) -> list[StateFields]:
        for best in (self.ints, self.floats, self.strings, self.bools):
            best.reserve(n)
        out: list[StateFields] = []
        for hi, i, hf, f, hs, s, hb, b in zip(
            self.ints.has[:n].tolist(),
            self.ints.best[:n].tolist(),
            self.floats.has[:n].tolist(),
            self.floats.best[:n].tolist(),
            self.strings.has[:n].tolist(),
            self.strings.best[:n].tolist(),
            self.bools.has[:n].tolist(),
            self.bools.best[:n].tolist(),
            strict=True,
        ):
            if hi and (not hf or not beats((v.FLOAT, f), (v.INT, i), self.is_min)):
                out.append({"extreme": events_pb2.Value(int_value=i)})
            elif hf:
                out.append({"extreme": events_pb2.Value(float_value=f)})
            elif hs:
                out.append({"extreme": events_pb2.Value(string_value=s)})
            elif hb:
                out.append({"extreme": events_pb2.Value(bool_value=bool(b))})
            else:
                out.append({})
        return out


# COUNT_DISTINCT and PERCENTILE will join here, keeping datasketches sketches per group and
# serializing them into AggregateState.sketch.
AGGREGATORS: dict[int, Callable[[plan_pb2.Aggregate], Aggregator]] = {
    F.AGGREGATE_FUNCTION_COUNT: _Count,
    F.AGGREGATE_FUNCTION_COUNT_FIELD: _Count,
    F.AGGREGATE_FUNCTION_SUM: _Sum,
    F.AGGREGATE_FUNCTION_AVG: _Sum,
    F.AGGREGATE_FUNCTION_MIN: _Extreme,
    F.AGGREGATE_FUNCTION_MAX: _Extreme,
}


_VALUE_FIELD: dict[int, str] = {v.INT: "int_value", v.FLOAT: "float_value", v.BOOL: "bool_value"}


def aggregate(
    plan: plan_pb2.QueryPlan,
    scanned: Iterable[tuple[ScanSegment, Index]],
    out: MutableSequence[plan_pb2.GroupState],
) -> None:
    """Appends to `out` the groups of the selected rows, each once, with one state per aggregate
    of the plan (`out` is PartialResult.groups, filled in place)."""
    aggregators = [AGGREGATORS[a.function](a) for a in plan.aggregates]
    index: dict[GroupKey, int] = {}
    for seg, sel in scanned:
        if len(sel) == 0:
            continue
        group, keys = _groups(plan, seg, sel)
        target = np.fromiter(
            (index.setdefault(k, len(index)) for k in keys), dtype=np.intp, count=len(keys)
        )
        part = SegmentGroups(seg, sel, group, len(keys), target, len(index))
        for aggregator in aggregators:
            aggregator.add(part)
    if not plan.group_by and not index:
        # SELECT count(*) FROM t answers one row even when nothing matches.
        index[()] = 0
    n = len(index)
    columns = [a.states(n) for a in aggregators]
    for key, i in index.items():
        group_state = out.add()  # type: ignore[attr-defined]
        for item in key:
            if item is None:
                group_state.key.add()
            else:
                group_state.key.add(**{_VALUE_FIELD.get(item[0], "string_value"): item[1]})
        for column in columns:
            group_state.states.add(**column[i])
