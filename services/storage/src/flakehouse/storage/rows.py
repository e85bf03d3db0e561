"""Raw-rows mode: the select fields of matching rows, sorted by ORDER BY and cut at LIMIT, per
segment first (vectorized) and then across segments."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events import values as v
from flakehouse.storage.predicate import Index, ScanSegment


@dataclass
class _OrderKeys:
    """Sort keys of some rows for one ORDER BY field. Types order numbers < strings < bools <
    null in both directions (nulls last); a direction reverses order within a type only. NaN is
    the greatest number, like DuckDB."""

    rank: npt.NDArray[np.int8]
    nan: npt.NDArray[np.int8]
    number: npt.NDArray[np.float64]
    integer: npt.NDArray[np.int64]
    code: npt.NDArray[np.int64]
    string: npt.NDArray[np.object_]
    flag: npt.NDArray[np.int8]

    def take(self, idx: Index) -> _OrderKeys:
        return _OrderKeys(*(getattr(self, f)[idx] for f in _ORDER_FIELDS))

    def lexsort_keys(self, descending: bool) -> list[npt.NDArray[Any]]:
        """Keys most significant first, leaving out constant ones (most fields have one type and
        no NaN, so usually one key is left); `code` must order strings."""
        keys: list[npt.NDArray[Any]]
        if not descending:
            keys = [self.rank, self.nan, self.number, self.integer, self.code, self.flag]
        else:
            keys = [self.rank, -self.nan, -self.number, ~self.integer, -self.code, -self.flag]
        return [k for k in keys if len(k) and k.min() != k.max()]


_I64_MAX = np.iinfo(np.int64).max
_ORDER_FIELDS = ("rank", "nan", "number", "integer", "code", "string", "flag")


def _locate(col_rows: npt.NDArray[Any], rows: Index, n: int) -> tuple[Index, Index]:
    """For ascending `rows` of a segment of n rows: which values of a column (positions in
    `col_rows`) belong to them, and at which position of `rows` each one is."""
    if len(rows) * 16 < n:
        # Few rows: binary search instead of a pass over the segment.
        pos = np.searchsorted(col_rows, rows)
        clipped = np.minimum(pos, max(len(col_rows) - 1, 0))
        at = np.flatnonzero((pos < len(col_rows)) & (col_rows[clipped] == rows))
        return pos[at], at
    position = np.full(n, -1, dtype=np.intp)
    position[rows] = np.arange(len(rows))
    where = position[col_rows]
    keep = np.flatnonzero(where >= 0)
    return keep, where[keep]


def _order_keys(seg: ScanSegment, field: str, rows: Index) -> _OrderKeys:
    n = len(rows)
    keys = _OrderKeys(
        rank=np.full(n, 3, dtype=np.int8),
        nan=np.zeros(n, dtype=np.int8),
        number=np.zeros(n, dtype=np.float64),
        integer=np.zeros(n, dtype=np.int64),
        code=np.zeros(n, dtype=np.int64),
        string=np.full(n, "", dtype=object),
        flag=np.zeros(n, dtype=np.int8),
    )
    for kind, col in seg.columns(field).items():
        keep, at = _locate(col.rows, rows, seg.n)
        if kind == v.STRING:
            assert col.codes is not None and col.dictionary is not None
            codes = col.codes[keep]
            keys.rank[at] = 1
            keys.code[at] = codes
            keys.string[at] = col.dictionary[codes]
            continue
        assert col.values is not None
        values = col.values[keep]
        if kind == v.BOOL:
            keys.rank[at] = 2
            keys.flag[at] = values
        elif kind == v.INT:
            keys.rank[at] = 0
            keys.number[at] = values.astype(np.float64)
            keys.integer[at] = values
        else:
            nan = np.isnan(values)
            keys.rank[at] = 0
            keys.nan[at] = nan
            keys.number[at] = np.where(nan, 0.0, values)
            # An integral float takes its value as the exact key too, so that it ties with an
            # equal int (numbers order by value; a later ORDER BY field decides). 2**63 and
            # above: int64's largest, the nearest there is.
            integral = np.isfinite(values) & (values == np.floor(values))
            exact = np.where(integral & (values < 2.0**63), np.maximum(values, -(2.0**63)), 0.0)
            keys.integer[at] = np.where(
                integral & (values >= 2.0**63), _I64_MAX, exact.astype(np.int64)
            )
    return keys


def _order(
    keys: list[_OrderKeys], order_by: Iterable[plan_pb2.OrderBy], limit: int | None = None
) -> Index:
    """Positions of the rows in order, only the first `limit` when given."""
    sort_keys: list[npt.NDArray[Any]] = []
    for k, ob in zip(keys, order_by, strict=True):
        sort_keys.extend(k.lexsort_keys(ob.descending))
    n = len(keys[0].rank)
    if not sort_keys:
        return np.arange(n if limit is None else min(n, limit))
    if len(sort_keys) == 1 and limit is not None and limit < n:
        # One key: select the top `limit` in linear time, then sort just those.
        (key,) = sort_keys
        top = np.argpartition(key, limit - 1)[:limit]
        return top[np.argsort(key[top], kind="stable")]
    # lexsort sorts by the last key first.
    order = np.lexsort(sort_keys[::-1])
    return order if limit is None else order[:limit]


def _value(kind: int, item: Any) -> events_pb2.Value:
    if kind == v.INT:
        return events_pb2.Value(int_value=item)
    if kind == v.FLOAT:
        return events_pb2.Value(float_value=item)
    if kind == v.BOOL:
        return events_pb2.Value(bool_value=item)
    return events_pb2.Value(string_value=item)


def _or_null(value: events_pb2.Value | None) -> events_pb2.Value:
    return value if value is not None else events_pb2.Value()


def _materialize(seg: ScanSegment, rows: Index, fields: Iterable[str]) -> list[events_pb2.Row]:
    """The select-field values of some rows of a segment, in the order given."""
    per_field: list[list[events_pb2.Value | None]] = []
    for field in fields:
        out: list[events_pb2.Value | None] = [None] * len(rows)
        for kind, col in seg.columns(field).items():
            pos = np.searchsorted(col.rows, rows)
            clipped = np.minimum(pos, max(len(col.rows) - 1, 0))
            hit = np.flatnonzero((pos < len(col.rows)) & (col.rows[clipped] == rows))
            at = pos[hit]
            if kind == v.STRING:
                assert col.codes is not None and col.dictionary is not None
                items = col.dictionary[col.codes[at]].tolist()
            else:
                assert col.values is not None
                items = col.values[at].tolist()
            for i, item in zip(hit.tolist(), items, strict=True):
                out[i] = _value(kind, item)
        per_field.append(out)
    return [events_pb2.Row(values=[_or_null(f[i]) for f in per_field]) for i in range(len(rows))]


def raw_rows(
    plan: plan_pb2.QueryPlan, scanned: Iterable[tuple[ScanSegment, Index]]
) -> list[events_pb2.Row]:
    """The select fields of matching rows, ordered by plan.order_by and cut at plan.limit."""
    if plan.order_by:
        return _ordered_rows(plan, scanned)
    # Any rows will do: stop reading segments once the limit is reached.
    limit = plan.limit or None
    rows: list[events_pb2.Row] = []
    for seg, sel in scanned:
        take = sel if limit is None else sel[: limit - len(rows)]
        rows.extend(_materialize(seg, take, plan.select_fields))
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _top_with_ties(key: npt.NDArray[Any], k: int, largest: bool) -> Index:
    """Positions of the k smallest (largest) keys and of every key equal to the k-th. NaN counts
    as the largest key."""
    n = len(key)
    if k >= n:
        return np.arange(n)
    # np.partition puts NaN last, as the largest.
    kth = np.partition(key, n - k if largest else k - 1)[n - k if largest else k - 1]
    if kth != kth:
        return np.flatnonzero(np.isnan(key)) if largest else np.arange(n)
    if largest:
        hit = key >= kth
        if key.dtype.kind == "f":
            hit |= np.isnan(key)
        return np.flatnonzero(hit)
    return np.flatnonzero(key <= kth)


def _candidates(seg: ScanSegment, sel: Index, order_by: Any, limit: int, alone: bool) -> Index:
    """A subset of `sel` (ascending) holding the first `limit` rows in order, found from the
    first ORDER BY field alone, without building every row's sort keys: whole type tiers
    (numbers < strings < bools < null) while they fit, then the best of the tier where the
    limit falls, with every row tied with the last one taken (later fields, or exact ints
    beyond float precision, order those). `alone`: the first field is the only one, so tied
    nulls may be cut anywhere."""
    field, descending = order_by.field, order_by.descending
    selected: npt.NDArray[np.bool_] | None = None
    if len(sel) != seg.n:
        selected = np.zeros(seg.n, dtype=bool)
        selected[sel] = True
    # Per tier, (rows, key) per column: the key orders the tier's rows like the field, but for
    # ties. Numbers compare as float64 (NaN largest), strings by code, bools as 0/1.
    tiers: list[list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]] = [[], [], []]
    for kind, col in seg.columns(field).items():
        keep = None if selected is None else np.flatnonzero(selected[col.rows])
        rows = col.rows if keep is None else col.rows[keep]
        if len(rows) == 0:
            continue
        if kind == v.STRING:
            assert col.codes is not None
            tiers[1].append((rows, col.codes if keep is None else col.codes[keep]))
            continue
        assert col.values is not None
        values = col.values if keep is None else col.values[keep]
        tiers[2 if kind == v.BOOL else 0].append((rows, values))
    chosen: list[npt.NDArray[Any]] = []
    remaining = limit
    for parts in tiers:
        if remaining <= 0:
            break
        size = sum(len(r) for r, _ in parts)
        if size <= remaining:
            chosen.extend(r for r, _ in parts)
            remaining -= size
            continue
        if len(parts) == 1:
            rows, key = parts[0]
        else:
            # Ints and floats together: as float64 (exact order comes later).
            rows = np.concatenate([r for r, _ in parts])
            key = np.concatenate([k.astype(np.float64) for _, k in parts])
        if key.dtype == np.bool_:
            key = key.view(np.uint8)
        chosen.append(rows[_top_with_ties(key, remaining, descending)])
        remaining = 0
    if remaining > 0:
        # Nulls, all tied on this field.
        holding = np.zeros(seg.n, dtype=bool)
        for col in seg.columns(field).values():
            holding[col.rows] = True
        nulls = sel[~holding[sel]]
        chosen.append(nulls[:remaining] if alone else nulls)
    if not chosen:
        return np.zeros(0, dtype=np.intp)
    return np.sort(np.concatenate(chosen).astype(np.intp, copy=False))


def _ordered_rows(
    plan: plan_pb2.QueryPlan, scanned: Iterable[tuple[ScanSegment, Index]]
) -> list[events_pb2.Row]:
    # Per segment, keep its best `limit` rows; then order those candidates together, with
    # strings ranked across segments (dictionary codes only order within one segment).
    limit = plan.limit or None
    candidates: list[tuple[ScanSegment, Index, list[_OrderKeys]]] = []
    for seg, sel in scanned:
        if len(sel) == 0:
            continue
        if limit is not None and len(sel) > limit:
            sel = _candidates(seg, sel, plan.order_by[0], limit, len(plan.order_by) == 1)
        keys = [_order_keys(seg, ob.field, sel) for ob in plan.order_by]
        if limit is not None and len(sel) > limit:
            top = _order(keys, plan.order_by, limit)
            sel = sel[top]
            keys = [k.take(top) for k in keys]
        candidates.append((seg, sel, keys))
    if not candidates:
        return []
    merged = [
        _OrderKeys(
            *(np.concatenate([getattr(c[2][i], f) for c in candidates]) for f in _ORDER_FIELDS)
        )
        for i in range(len(plan.order_by))
    ]
    for k in merged:
        _, inverse = np.unique(k.string, return_inverse=True)
        k.code = inverse.reshape(-1).astype(np.int64)
    order = _order(merged, plan.order_by, limit)
    owner = np.concatenate([np.full(len(c[1]), i, dtype=np.intp) for i, c in enumerate(candidates)])
    positions = np.concatenate([c[1] for c in candidates])
    out: list[events_pb2.Row | None] = [None] * len(order)
    chosen_owner = owner[order]
    for i in np.unique(chosen_owner).tolist():
        slots = np.flatnonzero(chosen_owner == i)
        materialized = _materialize(candidates[i][0], positions[order[slots]], plan.select_fields)
        for slot, row in zip(slots.tolist(), materialized, strict=True):
            out[slot] = row
    return [r for r in out if r is not None]
