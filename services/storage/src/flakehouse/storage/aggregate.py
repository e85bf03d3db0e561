"""GROUP BY and the mergeable aggregate states of plan.proto, vectorized: each segment's rows get
a local group index (numpy), each local group is mapped once to a global group, and aggregate
arrays are merged by fancy indexing. The answer (plan.proto's GroupColumns) is filled from those
arrays a column at a time. Python loops run per new group value, never per row."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, MutableSequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.events.columns import VALUE_MEMBERS
from flakehouse.sketches.arrays import grow as _grow
from flakehouse.storage.distinct import CountDistinct
from flakehouse.storage.predicate import Index, ScanSegment
from flakehouse.storage.quantiles import Percentile
from flakehouse.storage.segment import TIMESTAMP, ColumnView

F = plan_pb2.AggregateFunction
_NAN = float("nan")  # one NaN object: tuples compare items by identity first, so NaN keys merge
# Code ranges up to this size are counted with bincount instead of sorted with np.unique.
_DENSE_LIMIT = 1 << 16
_I64 = np.iinfo(np.int64)


# -- group keys ----------------------------------------------------------------------------------


@dataclass
class _Piece:
    """A range of key codes [start, start + size) holding the values of one type; `values` turns
    codes relative to `start` into the key's Python scalars."""

    start: int
    size: int
    kind: int
    values: Callable[[npt.NDArray[np.int64]], list[Any]]


@dataclass
class _KeyCodes:
    """One group-by key over the selected rows of a segment: a code per row in
    [0, cardinality), the code ranges of each type, and the null key's code if there is one."""

    codes: npt.NDArray[Any]
    cardinality: int
    pieces: list[_Piece]
    null: int | None


def _floats(values: list[float]) -> list[float]:
    return [_NAN if x != x else x for x in values]


def _value_codes(
    kind: int, col: ColumnView, keep: Any
) -> tuple[npt.NDArray[Any], int, Callable[[npt.NDArray[np.int64]], list[Any]]]:
    """Codes of the selected values of a column (`keep`: a mask or index over its values, None
    for all), their range, and how codes turn back into values. Strings: the dictionary codes;
    bools: 0/1; ints: offsets from the smallest when the range is small; else np.unique."""
    if kind == v.STRING:
        assert col.codes is not None and col.dictionary is not None
        dictionary = col.dictionary
        codes = col.codes if keep is None else col.codes[keep]
        return codes, len(dictionary), lambda c: dictionary[c].tolist()
    assert col.values is not None
    values = col.values if keep is None else col.values[keep]
    if kind == v.BOOL:
        return values.view(np.uint8), 2, lambda c: c.astype(bool).tolist()
    if kind == v.INT and len(values):
        low, high = int(values.min()), int(values.max())
        if high - low < max(2 * len(values), _DENSE_LIMIT):
            return values - low, high - low + 1, lambda c: [low + x for x in c.tolist()]
    domain, inverse = np.unique(values, return_inverse=True)
    if kind == v.FLOAT:
        return inverse.reshape(-1), len(domain), lambda c: _floats(domain[c].tolist())
    return inverse.reshape(-1), len(domain), lambda c: domain[c].tolist()


def _field_key(seg: ScanSegment, field: str, sel: Index) -> _KeyCodes:
    """A field's codes: a column holding every row (the usual case) gives its own codes; else
    code 0 is null and each type present gets its range of codes after it."""
    everything = len(sel) == seg.n
    columns = [(kind, col) for kind, col in sorted(seg.columns(field).items()) if col.count]
    if len(columns) == 1 and columns[0][1].count == seg.n:
        kind, col = columns[0]
        codes, size, values = _value_codes(kind, col, None if everything else sel)
        return _KeyCodes(codes, size, [_Piece(0, size, kind, values)], None)
    full = np.zeros(seg.n, dtype=np.int64)
    selected: npt.NDArray[np.bool_] | None = None
    if not everything:
        selected = np.zeros(seg.n, dtype=bool)
        selected[sel] = True
    pieces: list[_Piece] = []
    offset = 1
    for kind, col in columns:
        keep = None if selected is None else selected[col.rows]
        rows = col.rows if keep is None else col.rows[keep]
        if len(rows) == 0:
            continue
        codes, size, values = _value_codes(kind, col, keep)
        full[rows] = offset + codes.astype(np.int64)
        pieces.append(_Piece(offset, size, kind, values))
        offset += size
    return _KeyCodes(full if everything else full[sel], offset, pieces, 0)


def _bucket_key(seg: ScanSegment, width: int, sel: Index) -> _KeyCodes:
    """time_bucket: floor(ts / width) * width, coded relative to the segment's first bucket."""
    low, high = seg.view.min_ts // width, seg.view.max_ts // width

    def starts(codes: npt.NDArray[np.int64]) -> list[Any]:
        return [(low + c) * width for c in codes.tolist()]

    if low == high:
        # The whole segment lies in one bucket: no division at all.
        return _KeyCodes(np.zeros(len(sel), dtype=np.intp), 1, [_Piece(0, 1, v.INT, starts)], None)
    ts = seg.timestamps if len(sel) == seg.n else seg.timestamps[sel]
    quotient = np.floor_divide(ts, width)
    span = high - low + 1
    if span <= max(2 * len(sel), _DENSE_LIMIT):
        return _KeyCodes(quotient - low, span, [_Piece(0, span, v.INT, starts)], None)
    uniq, inverse = np.unique(quotient, return_inverse=True)

    def unique_starts(codes: npt.NDArray[np.int64]) -> list[Any]:
        return [q * width for q in uniq[codes].tolist()]

    return _KeyCodes(
        inverse.reshape(-1), len(uniq), [_Piece(0, len(uniq), v.INT, unique_starts)], None
    )


@dataclass
class _LocalGroups:
    """The groups of one segment's selected rows: local group of each row (0..G-1), rows per
    group, and per key the code of each group."""

    group: Index
    sizes: npt.NDArray[np.int64]
    parts: list[_KeyCodes]
    components: list[npt.NDArray[np.int64]]


def _groups(plan: plan_pb2.QueryPlan, seg: ScanSegment, sel: Index) -> _LocalGroups:
    """Local group of every selected row: codes of the keys combined (mixed radix), counted with
    bincount when their range is small, else sorted with np.unique."""
    if not plan.group_by:
        return _LocalGroups(
            np.zeros(len(sel), dtype=np.intp), np.array([len(sel)], dtype=np.int64), [], []
        )
    parts = [
        _field_key(seg, k.field, sel)
        if k.WhichOneof("kind") == "field"
        else _bucket_key(seg, k.time_bucket_us, sel)
        for k in plan.group_by
    ]
    total = math.prod(p.cardinality for p in parts)
    components: list[npt.NDArray[np.int64]]
    if total < 2**62:
        combined = parts[0].codes
        for p in parts[1:]:
            combined = combined.astype(np.int64) * p.cardinality + p.codes
        if total <= max(4 * len(sel), _DENSE_LIMIT):
            counts = np.bincount(combined, minlength=total)
            used = np.flatnonzero(counts)
            if len(used) == total:
                group = combined
            else:
                remap = np.empty(total, dtype=np.intp)
                remap[used] = np.arange(len(used))
                group = remap[combined]
            distinct, sizes = used, counts[used]
        else:
            distinct, inverse, sizes = np.unique(combined, return_inverse=True, return_counts=True)
            group = inverse.reshape(-1)
        components = []
        rest = distinct.astype(np.int64)
        for p in reversed(parts[1:]):
            components.append(rest % p.cardinality)
            rest = rest // p.cardinality
        components.append(rest)
        components.reverse()
    else:
        stacked = np.stack([p.codes.astype(np.int64) for p in parts], axis=1)
        distinct_rows, inverse, sizes = np.unique(
            stacked, axis=0, return_inverse=True, return_counts=True
        )
        group = inverse.reshape(-1)
        components = [distinct_rows[:, i] for i in range(len(parts))]
    return _LocalGroups(group.astype(np.intp, copy=False), sizes, parts, components)


class _ValueIds:
    """Numbers for the values of one group-by key, in order of first appearance: a dict per
    value type, looked up for all of a segment's distinct values at once. `kinds` and `values`
    hold the type (0: null) and the Python scalar of each number."""

    def __init__(self) -> None:
        self.kinds: list[int] = []
        self.values: list[Any] = []
        self._by_value: dict[int, dict[Any, int]] = {}

    def __len__(self) -> int:
        return len(self.kinds)

    def fill(self, vids: npt.NDArray[np.intp] | None, out: plan_pb2.ValueColumn) -> None:
        """Writes the values numbered `vids` (None: every number, in order) into `out`."""
        kinds = np.array(self.kinds, dtype=np.int8)
        values = np.empty(len(self.values), dtype=object)
        values[:] = self.values
        if vids is not None:
            kinds, values = kinds[vids], values[vids]
        out.types.extend(kinds.tolist())
        for kind, member in VALUE_MEMBERS.items():
            mask = kinds == kind
            if mask.any():
                getattr(out, member).extend(values[mask].tolist())

    def ids(self, part: _KeyCodes, codes: npt.NDArray[np.int64]) -> Index:
        """The number of the value of each code (`codes` ascending and distinct)."""
        out = np.empty(len(codes), dtype=np.intp)
        # Codes are ascending, so each type's codes are one slice.
        bounds: list[tuple[int, int, _Piece | None]] = [
            (p.start, p.start + p.size, p) for p in part.pieces
        ]
        if part.null is not None:
            bounds.append((part.null, part.null + 1, None))
        for start, stop, piece in bounds:
            lo, hi = np.searchsorted(codes, [start, stop]).tolist()
            if lo == hi:
                continue
            kind = piece.kind if piece is not None else 0
            values = piece.values(codes[lo:hi] - start) if piece is not None else [None]
            lookup = self._by_value.setdefault(kind, {})
            ids = np.fromiter(map(lookup.get, values, repeat(-1)), dtype=np.intp, count=hi - lo)
            for i in np.flatnonzero(ids < 0).tolist():
                value = values[i]
                vid = lookup.get(value)
                if vid is None:
                    vid = lookup[value] = len(self.kinds)
                    self.kinds.append(kind)
                    self.values.append(value)
                ids[i] = vid
            out[lo:hi] = ids
        return out


class _GroupIndex:
    """Global group numbers by key, in order of first appearance. Each key's values are
    numbered (`_ValueIds`); with one key that number is the group. With several, the numbers
    are packed into one uint64 while they fit, and packed keys are looked up in a sorted array
    (vectorized); else tuples of numbers in a dict."""

    def __init__(self, n_keys: int) -> None:
        self._n_keys = n_keys
        self._values = [_ValueIds() for _ in range(n_keys)]
        self._bits = 64 // n_keys if n_keys else 0
        self._packed = True
        self._sorted_keys = np.zeros(0, dtype=np.uint64)
        self._sorted_groups = np.zeros(0, dtype=np.intp)
        self._combos: dict[tuple[int, ...], int] = {}
        # Per key, the value numbers of the groups in group order (chunks to concatenate).
        self._group_values: list[list[npt.NDArray[np.intp]]] = [[] for _ in range(n_keys)]
        self._n_groups = 0
        self._empty_key = False

    def __len__(self) -> int:
        if self._n_keys == 0:
            return int(self._empty_key)
        if self._n_keys == 1:
            return len(self._values[0])
        return self._n_groups

    def _value_columns(self) -> list[npt.NDArray[np.intp]]:
        return [
            np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.intp)
            for chunks in self._group_values
        ]

    def fill_keys(self, out: MutableSequence[plan_pb2.ValueColumn]) -> None:
        """Appends to `out` one column per key: its value in each global group, in group
        order."""
        if self._n_keys == 1:
            self._values[0].fill(None, out.add())  # type: ignore[attr-defined]
            return
        for values, vids in zip(self._values, self._value_columns(), strict=True):
            values.fill(vids, out.add())  # type: ignore[attr-defined]

    def _add_groups(self, vids: list[Index], rows: Index) -> Index:
        """New groups for local groups `rows`; returns their numbers."""
        for chunks, vid in zip(self._group_values, vids, strict=True):
            chunks.append(vid[rows])
        first = self._n_groups
        self._n_groups += len(rows)
        return np.arange(first, self._n_groups, dtype=np.intp)

    def targets(self, local: _LocalGroups) -> Index:
        """The global group of each local group (adding groups not seen before)."""
        if not local.parts:
            self._empty_key = True
            return np.zeros(1, dtype=np.intp)
        if self._n_keys == 1:
            return self._values[0].ids(local.parts[0], local.components[0])
        vids = []
        for values, part, codes in zip(self._values, local.parts, local.components, strict=True):
            uniq, inverse = np.unique(codes, return_inverse=True)
            vids.append(values.ids(part, uniq)[inverse.reshape(-1)])
        out = np.empty(len(local.sizes), dtype=np.intp)
        if self._packed and all(len(values) <= 1 << self._bits for values in self._values):
            packed = vids[0].astype(np.uint64)
            for vid in vids[1:]:
                packed = (packed << np.uint64(self._bits)) | vid.astype(np.uint64)
            known, groups = self._sorted_keys, self._sorted_groups
            pos = np.searchsorted(known, packed)
            found = pos < len(known)
            found[found] = known[pos[found]] == packed[found]
            out[found] = groups[pos[found]]
            new = np.flatnonzero(~found)
            if len(new):
                # Local groups are distinct, so are their keys: insert them in order.
                added = self._add_groups(vids, new)
                out[new] = added
                order = np.argsort(packed[new])
                at = np.searchsorted(known, packed[new][order])
                self._sorted_keys = np.insert(known, at, packed[new][order])
                self._sorted_groups = np.insert(groups, at, added[order])
            return out
        if self._packed:
            # A key has too many values to pack: tuples from now on.
            self._packed = False
            columns = [vids.tolist() for vids in self._value_columns()]
            self._combos = {ids: gid for gid, ids in enumerate(zip(*columns, strict=True))}
        keys = list(zip(*(vid.tolist() for vid in vids), strict=True))
        combos = self._combos
        out[:] = np.fromiter(map(combos.get, keys, repeat(-1)), dtype=np.intp, count=len(keys))
        new = np.flatnonzero(out < 0)
        if len(new):
            out[new] = added = self._add_groups(vids, new)
            for i, gid in zip(new.tolist(), added.tolist(), strict=True):
                combos[keys[i]] = gid
        return out


# -- aggregators ---------------------------------------------------------------------------------


@dataclass
class SegmentGroups:
    """One segment's share of an aggregation: its selected rows, their local group, and the
    global group of every local group (distinct: each local group maps to its own). `sizes`:
    rows per local group, when known."""

    seg: ScanSegment
    sel: Index
    group: Index
    n_local: int
    target: Index
    n_global: int
    _row_group: Index | None = None
    sizes: npt.NDArray[np.int64] | None = None
    _taken: dict[int, tuple[Index, Index]] = dataclasses.field(default_factory=dict)

    @property
    def everything(self) -> bool:
        """Whether every row of the segment is selected (`sel` is ascending and distinct)."""
        return len(self.sel) == self.seg.n

    def row_group(self) -> Index:
        """Local group of every segment row, -1 where the row is not selected."""
        if self._row_group is None:
            self._row_group = np.full(self.seg.n, -1, dtype=np.intp)
            self._row_group[self.sel] = self.group
        return self._row_group

    def column(self, col: ColumnView) -> tuple[Index, npt.NDArray[np.bool_]]:
        """Local group of each selected value of `col`, and which of its values are selected."""
        if self.everything:
            # Row r's group is group[r]: every value is selected.
            groups = self.group if col.count == self.seg.n else self.group[col.rows]
            return groups, np.ones(col.count, dtype=bool)
        if col.count == self.seg.n:
            # Dense: value i is row i, so the selected values are the selected rows, in order.
            keep = np.zeros(col.count, dtype=bool)
            keep[self.sel] = True
            return self.group, keep
        groups = self.row_group()[col.rows]
        keep = groups >= 0
        return groups[keep], keep

    def take(self, col: ColumnView, data: npt.NDArray[Any]) -> tuple[Index, npt.NDArray[Any]]:
        """Local group of each selected value of `col`, and those values of `data` (its values
        or codes): `column` without building masks or copies where none is needed."""
        if self.everything:
            return (self.group if col.count == self.seg.n else self.group[col.rows]), data
        if col.count == self.seg.n:
            return self.group, data[self.sel]
        taken = self._taken.get(id(col))
        if taken is None:
            groups = self.row_group()[col.rows]
            keep = np.flatnonzero(groups >= 0)
            taken = self._taken[id(col)] = (groups[keep], keep)
        return taken[0], data[taken[1]]

    def counts(self, groups: Index) -> npt.NDArray[np.int64]:
        return np.bincount(groups, minlength=self.n_local)

    def group_sizes(self) -> npt.NDArray[np.int64]:
        """Selected rows per local group."""
        if self.sizes is None:
            self.sizes = self.counts(self.group)
        return self.sizes


class Aggregator(Protocol):
    """One aggregate of the plan, accumulated over global groups 0..n-1."""

    def add(self, part: SegmentGroups) -> None: ...
    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        """Writes the states of groups 0..n-1 into `out` (see plan.proto's StateColumn)."""


class _Count:
    """COUNT (rows) and COUNT_FIELD (rows where the field has a value of any type)."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field if agg.function == F.AGGREGATE_FUNCTION_COUNT_FIELD else None
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, part: SegmentGroups) -> None:
        if self.field is None or self.field == TIMESTAMP:
            local = part.group_sizes()
        else:
            local = np.zeros(part.n_local, dtype=np.int64)
            for col in part.seg.columns(self.field).values():
                if col.count == part.seg.n:
                    local += part.group_sizes()
                else:
                    local += part.counts(part.column(col)[0])
        self.counts = _grow(self.counts, part.n_global, 0)
        self.counts[part.target] += local

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self.counts = _grow(self.counts, n, 0)
        out.counts.extend(self.counts[:n].tolist())


def _bound(values: npt.NDArray[Any]) -> int:
    return max(-int(values.min()), int(values.max())) if len(values) else 0


def _int_sums(values: npt.NDArray[np.int64], groups: Index, n: int) -> npt.NDArray[Any]:
    """Exact per-group sums of int64 values: int64 when no sum can overflow, else Python ints
    (an object array)."""
    bound = _bound(values) * len(values)
    if bound < 2**53:
        # Every partial sum is an integer float64 represents exactly.
        return np.bincount(groups, weights=values, minlength=n).astype(np.int64)
    if bound < 2**63:
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
            groups, values = part.take(col, col.values)
            local = _int_sums(values, groups, part.n_local)
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
            groups, values = part.take(col, col.values)
            local_counts = part.counts(groups)
            self.sums[target] += np.bincount(groups, weights=values, minlength=part.n_local)
            self.seen[target] |= local_counts > 0
            self.counts[target] += local_counts

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self._reserve(n)
        int_sums, sums, seen = self.int_sums[:n], self.sums[:n], self.seen[:n]
        if int_sums.dtype == object:
            big = [not _I64.min <= x <= _I64.max for x in int_sums.tolist()]
            over = np.array(big, dtype=bool).reshape(-1)
            if over.any():
                # sint64 cannot carry them: those exact int sums degrade to floats, as in SQL
                # engines without 128-bit integers.
                sums, seen, int_sums = sums.copy(), seen.copy(), int_sums.copy()
                sums[over] += np.array([float(x) for x in int_sums[over].tolist()])
                seen[over] = True
                int_sums[over] = 0
            int_sums = int_sums.astype(np.int64)
        out.counts.extend(self.counts[:n].tolist())
        out.sums.extend(sums.tolist())
        out.int_sums.extend(int_sums.tolist())
        out.float_seen.extend(seen.tolist())


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


def float_wins(
    floats: npt.NDArray[np.float64], ints: npt.NDArray[np.int64], is_min: bool
) -> npt.NDArray[np.bool_]:
    """Where a group's best float replaces its best int as the extreme: when strictly better,
    compared exactly. NaN never wins; on a tie the int stays, so the merge order never changes
    the answer's type."""
    rounded = ints.astype(np.float64)
    wins: npt.NDArray[np.bool_] = floats < rounded if is_min else floats > rounded
    # An int beyond 2**53 can round onto the float: those compare exactly, in Python.
    ties = np.flatnonzero((floats == rounded) & ((ints > 2**53) | (ints < -(2**53))))
    for i, f, x in zip(ties.tolist(), floats[ties].tolist(), ints[ties].tolist(), strict=True):
        wins[i] = f < x if is_min else f > x
    return wins


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
        groups, values = part.take(col, values)
        best = np.full(part.n_local, fill, dtype=values.dtype)
        # fmin/fmax skip NaN, so a NaN never hides the numbers of its group.
        ufunc: np.ufunc
        if values.dtype.kind == "f":
            ufunc = np.fmin if self.is_min else np.fmax
        else:
            ufunc = np.minimum if self.is_min else np.maximum
        ufunc.at(best, groups, values)
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

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        for best in (self.ints, self.floats, self.strings, self.bools):
            best.reserve(n)
        ints, floats = self.ints.best[:n], self.floats.best[:n]
        has_int, has_float = self.ints.has[:n], self.floats.has[:n]
        has_number = has_int | has_float
        # Numbers beat strings and strings beat bools.
        is_float = has_float & ~(has_int & ~float_wins(floats, ints, self.is_min))
        is_int = has_int & ~is_float
        is_string = self.strings.has[:n] & ~has_number
        is_bool = self.bools.has[:n] & ~has_number & ~self.strings.has[:n]
        types = np.zeros(n, dtype=np.int8)
        types[is_int], types[is_float] = v.INT, v.FLOAT
        types[is_string], types[is_bool] = v.STRING, v.BOOL
        column = out.extremes
        column.SetInParent()
        column.types.extend(types.tolist())  # type: ignore[arg-type]
        column.int_values.extend(ints[is_int].tolist())
        column.float_values.extend(floats[is_float].tolist())
        column.string_values.extend(self.strings.best[:n][is_string].tolist())
        column.bool_values.extend(self.bools.best[:n][is_bool].astype(bool).tolist())


# COUNT_DISTINCT and PERCENTILE keep flakehouse.sketches states per group (distinct.py,
# quantiles.py) and serialize them into AggregateState.sketch.
AGGREGATORS: dict[int, Callable[[plan_pb2.Aggregate], Aggregator]] = {
    F.AGGREGATE_FUNCTION_COUNT: _Count,
    F.AGGREGATE_FUNCTION_COUNT_FIELD: _Count,
    F.AGGREGATE_FUNCTION_SUM: _Sum,
    F.AGGREGATE_FUNCTION_AVG: _Sum,
    F.AGGREGATE_FUNCTION_MIN: _Extreme,
    F.AGGREGATE_FUNCTION_MAX: _Extreme,
    F.AGGREGATE_FUNCTION_COUNT_DISTINCT: CountDistinct,
    F.AGGREGATE_FUNCTION_PERCENTILE: Percentile,
}


def aggregate(
    plan: plan_pb2.QueryPlan,
    scanned: Iterable[tuple[ScanSegment, Index]],
    out: plan_pb2.GroupColumns,
) -> None:
    """Fills `out` (PartialResult.group_columns, in place) with the groups of the selected rows,
    each once: a column per group-by key and a column of states per aggregate of the plan."""
    # Aggregates with the same state (p50, p95 and p99 of one field) share one aggregator.
    shared: dict[bytes, Aggregator] = {}
    for a in plan.aggregates:
        key = _state_key(a)
        if key not in shared:
            shared[key] = AGGREGATORS[a.function](a)
    aggregators = list(shared.values())
    index = _GroupIndex(len(plan.group_by))
    for seg, sel in scanned:
        if len(sel) == 0:
            continue
        local = _groups(plan, seg, sel)
        target = index.targets(local)
        part = SegmentGroups(
            seg, sel, local.group, len(local.sizes), target, len(index), sizes=local.sizes
        )
        for aggregator in aggregators:
            aggregator.add(part)
    if not plan.group_by and not len(index):
        # SELECT count(*) FROM t answers one row even when nothing matches.
        index.targets(_LocalGroups(np.zeros(0, dtype=np.intp), np.zeros(1, np.int64), [], []))
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
    applied by the query service after the merge, so it is not part of the state."""
    key = plan_pb2.Aggregate()
    key.CopyFrom(aggregate)
    key.ClearField("quantile")
    return key.SerializeToString(deterministic=True)
