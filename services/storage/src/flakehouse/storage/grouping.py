"""GROUP BY over a segment's selected rows, vectorized: each row gets a local group (the codes of
its keys combined, counted with numpy), each local group is mapped once to a global group
(flakehouse.kernels' GroupKeys, the numbering the query service's merge uses too), and the
aggregators (aggregators.py, distinct.py, quantiles.py) merge their per-group arrays by fancy
indexing through `SegmentGroups`. Python loops run per new group value, never per row."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.events.columns import VALUE_MEMBERS
from flakehouse.kernels.calendar import ORIGIN_US
from flakehouse.kernels.numbering import GroupKeys, ValueNumbers
from flakehouse.storage.predicate import Index, ScanSegment
from flakehouse.storage.segment import ColumnView

# Code ranges up to this size are counted with bincount instead of sorted with np.unique.
_DENSE_LIMIT = 1 << 16

Values = npt.NDArray[Any] | Sequence[Any]
"""A key's values: a numpy array of numbers or bools, or a list of strings."""


# -- the keys of one segment -----------------------------------------------------------------------


@dataclass
class _Piece:
    """A range of key codes [start, start + size) holding the values of one type; `values` turns
    codes relative to `start` into the key's Python scalars."""

    start: int
    size: int
    kind: int
    values: Callable[[npt.NDArray[np.int64]], Values]


@dataclass
class _KeyCodes:
    """One group-by key over the selected rows of a segment: a code per row in
    [0, cardinality), the code ranges of each type, and the null key's code if there is one."""

    codes: npt.NDArray[Any]
    cardinality: int
    pieces: list[_Piece]
    null: int | None


def _value_codes(
    kind: int, col: ColumnView, keep: Any
) -> tuple[npt.NDArray[Any], int, Callable[[npt.NDArray[np.int64]], Values]]:
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
        return values.view(np.uint8), 2, lambda c: c.astype(bool)
    if kind == v.INT and len(values):
        low, high = int(values.min()), int(values.max())
        if high - low < max(2 * len(values), _DENSE_LIMIT):
            return values - low, high - low + 1, lambda c: low + c
    domain, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1), len(domain), lambda c: domain[c]


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
    """time_bucket in UTC: ORIGIN + floor((ts - ORIGIN) / width) * width, ORIGIN being
    2000-01-03T00:00:00Z (a Monday, as DuckDB's), coded relative to the segment's first bucket.
    With `shift` = ORIGIN mod width (0 for widths that divide a day) that is
    shift + floor((ts - shift) / width) * width."""
    shift = ORIGIN_US % width
    low, high = (seg.view.min_ts - shift) // width, (seg.view.max_ts - shift) // width

    def starts(codes: npt.NDArray[np.int64]) -> Values:
        return (low + codes) * width + shift

    if low == high:
        # The whole segment lies in one bucket: no division at all.
        return _KeyCodes(np.zeros(len(sel), dtype=np.intp), 1, [_Piece(0, 1, v.INT, starts)], None)
    ts = seg.timestamps if len(sel) == seg.n else seg.timestamps[sel]
    if shift:
        # floor((ts - shift) / width) without computing ts - shift, which could wrap.
        quotient, remainder = np.divmod(ts, width)
        quotient -= remainder < shift
    else:
        quotient = np.floor_divide(ts, width)
    span = high - low + 1
    if span <= max(2 * len(sel), _DENSE_LIMIT):
        return _KeyCodes(quotient - low, span, [_Piece(0, span, v.INT, starts)], None)
    uniq, inverse = np.unique(quotient, return_inverse=True)

    def unique_starts(codes: npt.NDArray[np.int64]) -> Values:
        return uniq[codes] * width + shift

    return _KeyCodes(
        inverse.reshape(-1), len(uniq), [_Piece(0, len(uniq), v.INT, unique_starts)], None
    )


@dataclass
class LocalGroups:
    """The groups of one segment's selected rows: local group of each row (0..G-1), rows per
    group, and per key the code of each group."""

    group: Index
    sizes: npt.NDArray[np.int64]
    parts: list[_KeyCodes]
    components: list[npt.NDArray[np.int64]]


def local_groups(plan: plan_pb2.QueryPlan, seg: ScanSegment, sel: Index) -> LocalGroups:
    """Local group of every selected row: codes of the keys combined (mixed radix), counted with
    bincount when their range is small, else sorted with np.unique."""
    if not plan.group_by:
        return LocalGroups(
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
    return LocalGroups(group.astype(np.intp, copy=False), sizes, parts, components)


# -- global groups ---------------------------------------------------------------------------------


def _value_ids(values: ValueNumbers, part: _KeyCodes, codes: npt.NDArray[np.int64]) -> Index:
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
        if piece is None:
            out[lo:hi] = values.number(0, [None])
        else:
            out[lo:hi] = values.number(piece.kind, piece.values(codes[lo:hi] - start))
    return out


def _fill(values: ValueNumbers, vids: Index, out: plan_pb2.ValueColumn) -> None:
    """Writes the values numbered `vids` into `out`."""
    kinds = np.array(values.kinds, dtype=np.int8)[vids]
    cells = np.empty(len(values.cells), dtype=object)
    cells[:] = values.cells
    cells = cells[vids]
    out.types.extend(kinds.tolist())
    for kind, member in VALUE_MEMBERS.items():
        mask = kinds == kind
        if mask.any():
            getattr(out, member).extend(cells[mask].tolist())


class GroupIndex:
    """The global groups of an aggregation, numbered in order of first appearance."""

    def __init__(self, width: int) -> None:
        self.keys = GroupKeys(width)

    def __len__(self) -> int:
        return self.keys.size

    def targets(self, local: LocalGroups) -> Index:
        """The global group of each local group (adding groups not seen before)."""
        if not local.parts:
            return self.keys.groups([], 1)
        ids = []
        keys = zip(self.keys.values, local.parts, local.components, strict=True)
        for values, part, codes in keys:
            if len(local.parts) == 1:
                ids.append(_value_ids(values, part, codes))  # distinct already
            else:
                uniq, inverse = np.unique(codes, return_inverse=True)
                ids.append(_value_ids(values, part, uniq)[inverse.reshape(-1)])
        return self.keys.groups(ids, len(local.sizes))

    def fill_keys(self, out: MutableSequence[plan_pb2.ValueColumn]) -> None:
        """Appends to `out` one column per key: its value in each global group, in group
        order."""
        for key, values in enumerate(self.keys.values):
            _fill(values, self.keys.key_ids(key), out.add())  # type: ignore[attr-defined]


# -- one segment's share ---------------------------------------------------------------------------


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

    def where(self, mask: npt.NDArray[np.bool_]) -> SegmentGroups | None:
        """This share restricted to its rows where `mask` (over the segment's rows) holds, with
        the same local and global groups (a group without such rows keeps its place); None
        when no row is left."""
        keep = mask if self.everything else mask[self.sel]
        if keep.all():
            return self
        kept = np.flatnonzero(keep)
        if not len(kept):
            return None
        return SegmentGroups(
            self.seg, self.sel[kept], self.group[kept], self.n_local, self.target, self.n_global
        )

    def counts(self, groups: Index) -> npt.NDArray[np.int64]:
        return np.bincount(groups, minlength=self.n_local)

    def group_sizes(self) -> npt.NDArray[np.int64]:
        """Selected rows per local group."""
        if self.sizes is None:
            self.sizes = self.counts(self.group)
        return self.sizes
