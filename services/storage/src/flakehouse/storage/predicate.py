"""Filters over one segment with SQL three-valued logic: every predicate gives a (true, false)
pair of row masks, and a row in neither is unknown (NULL). Only true rows are kept. Also pruning:
whether a filter can be true anywhere in a segment, from column statistics alone. String
kernels: strings.py."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels.computed_names import computed_index, is_computed
from flakehouse.storage.segment import (
    TIMESTAMP,
    ColumnStats,
    ColumnView,
    SegmentView,
)
from flakehouse.storage.strings import like_entries, literal_prefix, string_compare

Mask = npt.NDArray[np.bool_]
Index = npt.NDArray[np.intp]
Truth = tuple[Mask, Mask]
"""(true, false) masks of a predicate; a row in neither is unknown (SQL NULL)."""

COMPARE_OPS: dict[int, Callable[[Any, Any], Any]] = {
    plan_pb2.COMPARE_OP_EQ: np.equal,
    plan_pb2.COMPARE_OP_NE: np.not_equal,
    plan_pb2.COMPARE_OP_LT: np.less,
    plan_pb2.COMPARE_OP_LE: np.less_equal,
    plan_pb2.COMPARE_OP_GT: np.greater,
    plan_pb2.COMPARE_OP_GE: np.greater_equal,
}
_NEGATED_OP: dict[int, int] = {
    plan_pb2.COMPARE_OP_EQ: plan_pb2.COMPARE_OP_NE,
    plan_pb2.COMPARE_OP_NE: plan_pb2.COMPARE_OP_EQ,
    plan_pb2.COMPARE_OP_LT: plan_pb2.COMPARE_OP_GE,
    plan_pb2.COMPARE_OP_GE: plan_pb2.COMPARE_OP_LT,
    plan_pb2.COMPARE_OP_LE: plan_pb2.COMPARE_OP_GT,
    plan_pb2.COMPARE_OP_GT: plan_pb2.COMPARE_OP_LE,
}
_PY_OPS: dict[int, Callable[[Any, Any], bool]] = {
    plan_pb2.COMPARE_OP_EQ: operator.eq,
    plan_pb2.COMPARE_OP_NE: operator.ne,
    plan_pb2.COMPARE_OP_LT: operator.lt,
    plan_pb2.COMPARE_OP_LE: operator.le,
    plan_pb2.COMPARE_OP_GT: operator.gt,
    plan_pb2.COMPARE_OP_GE: operator.ge,
}
"""Strings (code point order, as the sorted dictionaries) and bools (False < True)."""
_SCALAR_TYPES: dict[int, Callable[[Any], Any]] = {v.INT: np.int64, v.FLOAT: np.float64}


def not_operand(expr: plan_pb2.Expr) -> plan_pb2.Expr:
    # `not` is a Python keyword: the generated class only offers it through getattr.
    operand: plan_pb2.Expr = getattr(expr, "not").operand
    return operand


class ColumnSource(Protocol):
    """Computes the plan's computed columns (computed.py)."""

    def evaluate(self, seg: ScanSegment, index: int) -> dict[int, ColumnView]: ...


class ScanSegment:
    """A segment under evaluation, caching what several expressions share: the plan's computed
    columns among them, each evaluated once, on first use."""

    def __init__(self, view: SegmentView, computed: ColumnSource | None = None) -> None:
        self.view = view
        self.n = view.row_count
        self.timestamps = view.timestamps
        self._computed = computed
        self._all_rows: Index | None = None
        self._present: dict[str, Mask] = {}
        self._made: dict[str, dict[int, ColumnView]] = {}

    def all_rows(self) -> Index:
        """0..n-1 (cached: do not modify)."""
        if self._all_rows is None:
            self._all_rows = np.arange(self.n, dtype=np.intp)
        return self._all_rows

    def columns(self, field: str) -> dict[int, ColumnView]:
        """The column of each type of a field, `timestamp` or a computed column (`$k`)."""
        if field == TIMESTAMP:
            made = self._made.get(field)
            if made is None:
                made = self._made[field] = {v.INT: ColumnView(self.all_rows(), self.timestamps)}
            return made
        if is_computed(field):
            made = self._made.get(field)
            if made is None:
                index = computed_index(field)
                # The plan check refuses names of computed columns the plan does not have.
                assert self._computed is not None and index is not None
                made = self._made[field] = self._computed.evaluate(self, index)
            return made
        return self.view.columns.get(field, {})

    def present(self, field: str) -> Mask:
        """Rows holding a value of `field` in any type (cached: do not modify)."""
        mask = self._present.get(field)
        if mask is None:
            if field == TIMESTAMP:
                mask = np.ones(self.n, dtype=bool)
            else:
                mask = np.zeros(self.n, dtype=bool)
                for col in self.columns(field).values():
                    mask[col.rows] = True
            self._present[field] = mask
        return mask

    def falses(self) -> Mask:
        return np.zeros(self.n, dtype=bool)

    def spread(self, col: ColumnView, hit: Mask) -> Mask:
        """The rows whose value in `col` is in `hit` (a mask over the column's values). A dense
        column's values are its rows: then `hit` itself is returned, so pass a fresh array."""
        if col.count == self.n:
            return hit
        out = np.zeros(self.n, dtype=bool)
        out[col.rows[hit]] = True
        return out

    def holding(self, col: ColumnView) -> Mask:
        """The rows holding a value in `col` (a fresh array)."""
        if col.count == self.n:
            return np.ones(self.n, dtype=bool)
        out = np.zeros(self.n, dtype=bool)
        out[col.rows] = True
        return out


def _comparable_types(literal: events_pb2.Value) -> tuple[tuple[int, ...], Any]:
    kind = literal.WhichOneof("kind")
    if kind == "int_value" or kind == "float_value":
        return (v.INT, v.FLOAT), getattr(literal, kind)
    if kind == "string_value":
        return (v.STRING,), literal.string_value
    if kind == "bool_value":
        return (v.BOOL,), literal.bool_value
    return (), None


class Filter:
    """A plan's filter, evaluated segment by segment."""

    def __init__(self, expr: plan_pb2.Expr) -> None:
        self.expr = expr
        self._like: dict[str, re.Pattern[str]] = {}

    def true(self, seg: ScanSegment) -> Mask:
        """Rows where the filter is TRUE (the false side is not computed where not needed)."""
        return self._eval(self.expr, seg, False)[0]

    def truth(self, seg: ScanSegment) -> Truth:
        true, false = self._eval(self.expr, seg, True)
        assert false is not None
        return true, false

    # -- evaluation ------------------------------------------------------------------------------

    def _eval(self, expr: plan_pb2.Expr, seg: ScanSegment, want_false: bool) -> tuple[Mask, Any]:
        """(true, false) masks, fresh arrays; false is None unless `want_false`."""
        kind = expr.WhichOneof("kind")
        if kind == "compare":
            c = expr.compare
            return self._compare(seg, c.field, c.op, c.value, want_false)
        if kind == "in_list":
            return self._in_list(seg, expr.in_list, want_false)
        if kind == "like":
            return self._like_truth(seg, expr.like, want_false)
        if kind == "is_null":
            present = seg.present(expr.is_null.field)
            # Copies: the present mask is cached and callers combine results in place.
            if expr.is_null.negated:
                return present.copy(), (~present if want_false else None)
            return ~present, (present.copy() if want_false else None)
        if kind == "junction":
            return self._junction(seg, expr.junction, want_false)  # type: ignore[no-any-return]
        if kind == "not":
            t, f = self._eval(not_operand(expr), seg, True)
            return f, (t if want_false else None)
        # The fragment checks plans before running them.
        raise AssertionError(f"unchecked expression {kind}")

    def _junction(self, seg: ScanSegment, j: plan_pb2.Junction, want_false: bool) -> Any:
        is_and = j.op == plan_pb2.JUNCTION_OP_AND
        true: Mask | None = None
        false: Mask | None = None
        for operand in j.operands:
            t, f = self._eval(operand, seg, want_false)
            if true is None:
                true, false = t, f
            elif is_and:
                true &= t
                if want_false:
                    false |= f
            else:
                true |= t
                if want_false:
                    false &= f
            # Nothing left to decide: the remaining operands cannot change the result.
            if not want_false and is_and and not true.any():
                break
        if true is None:
            empty = seg.falses()
            full = np.ones(seg.n, dtype=bool)
            return (full, empty if want_false else None) if is_and else (empty, full)
        return true, false

    def _compare(
        self, seg: ScanSegment, field: str, op: int, literal: events_pb2.Value, want_false: bool
    ) -> tuple[Mask, Mask | None]:
        """field <op> literal: unknown where the row has no value of a comparable type (and
        everywhere for a NULL literal)."""
        kinds, lit = _comparable_types(literal)
        true: Mask | None = None
        known: Mask | None = None
        columns = seg.columns(field)
        for kind in kinds:
            col = columns.get(kind)
            if col is None or col.count == 0:
                continue
            if kind == v.STRING:
                hit = string_compare(col, op, lit)
            else:
                hit = COMPARE_OPS[op](col.values, lit)
            rows = seg.spread(col, hit)
            true = rows if true is None else true | rows
            if want_false:
                held = seg.holding(col)
                known = held if known is None else known | held
        if true is None:
            true = seg.falses()
        if not want_false:
            return true, None
        return true, (known & ~true) if known is not None else seg.falses()

    def _in_list(
        self, seg: ScanSegment, in_list: plan_pb2.InList, want_false: bool
    ) -> tuple[Mask, Mask | None]:
        """IN is true when some listed value equals the row's; false when the row has a value and
        none matches (unless the list holds NULL); else unknown. NOT IN is its negation, so
        NOT (x IN l) and x NOT IN l always agree."""
        literals: dict[int, list[Any]] = {}
        has_null = False
        for value in in_list.values:
            kinds, lit = _comparable_types(value)
            if not kinds:
                has_null = True
            for kind in kinds:
                literals.setdefault(kind, []).append(lit)
        true: Mask | None = None
        columns = seg.columns(in_list.field)
        for kind, lits in literals.items():
            col = columns.get(kind)
            if col is None or col.count == 0:
                continue
            if kind == v.STRING:
                # Decide per dictionary entry, then map through the codes: one pass over rows.
                assert col.codes is not None and col.dictionary is not None
                entries = np.zeros(len(col.dictionary), dtype=bool)
                at = np.searchsorted(col.dictionary, np.array(lits, dtype=object))
                for i, lit in zip(at.tolist(), lits, strict=True):
                    if i < len(col.dictionary) and col.dictionary[i] == lit:
                        entries[i] = True
                hit = entries[col.codes]
            else:
                assert col.values is not None
                hit = np.zeros(col.count, dtype=bool)
                for lit in lits:
                    hit |= np.equal(col.values, lit)
            rows = seg.spread(col, hit)
            true = rows if true is None else true | rows
        if true is None:
            true = seg.falses()
        if not (want_false or in_list.negated):
            return true, None
        false = seg.falses() if has_null else seg.present(in_list.field) & ~true
        return (false, true) if in_list.negated else (true, false)

    def _like_truth(
        self, seg: ScanSegment, like: plan_pb2.Like, want_false: bool
    ) -> tuple[Mask, Mask | None]:
        col = seg.columns(like.field).get(v.STRING)
        if col is None or col.count == 0:
            return seg.falses(), (seg.falses() if want_false or like.negated else None)
        assert col.codes is not None and col.dictionary is not None
        hit = like_entries(col.dictionary, like.pattern, self._like)[col.codes]
        if not (want_false or like.negated):
            return seg.spread(col, hit), None
        true, false = seg.spread(col, hit), seg.spread(col, ~hit)
        return (false, true) if like.negated else (true, false)

    # -- pruning ---------------------------------------------------------------------------------

    def may_match(self, view: SegmentView) -> bool:
        """False when statistics prove the filter TRUE on no row of `view`: then the segment can
        be skipped. Uses the stats the view has without decoding (sealed segments); for a view
        without them, those of its columns (decoding them, as the scan would anyway)."""
        return _possible(self.expr, _SegmentStats(view), True)


class _SegmentStats:
    """Column statistics of one segment for pruning."""

    def __init__(self, view: SegmentView) -> None:
        self.view = view
        self.n = view.row_count

    def stats(self, field: str) -> dict[int, ColumnStats]:
        assert not is_computed(field), "no statistics describe a computed column"
        if field == TIMESTAMP:
            return {v.INT: ColumnStats(self.n, self.view.min_ts, self.view.max_ts)}
        known = self.view.column_stats(field)
        if known is not None:
            return known
        return {kind: col.stats() for kind, col in self.view.columns.get(field, {}).items()}

    def dictionary(self, field: str) -> npt.NDArray[np.object_] | None:
        """The string dictionary of `field` if it is decoded already, else None."""
        if field == TIMESTAMP or not self.view.decoded:
            return None
        col = self.view.columns.get(field, {}).get(v.STRING)
        return col.dictionary if col is not None else None

    def present(self, field: str) -> int:
        return sum(st.count for st in self.stats(field).values())


def _leaf_field(expr: plan_pb2.Expr) -> str | None:
    kind = expr.WhichOneof("kind")
    if kind in ("compare", "in_list", "like", "is_null"):
        field: str = getattr(expr, kind).field
        return field
    return None


def _possible(expr: plan_pb2.Expr, src: _SegmentStats, want: bool) -> bool:
    """Whether `expr` may be TRUE (want) or FALSE (not want) on some row. Errs towards True:
    only a proof of impossibility prunes."""
    field = _leaf_field(expr)
    if field is not None and is_computed(field):
        # A sealed segment's statistics know stored fields only: nothing is known of a computed
        # column's values, and the absence of its name from them proves nothing.
        return True
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        c = expr.compare
        return _compare_possible(src, c.field, c.op, c.value, want)
    if kind == "in_list":
        il = expr.in_list
        if il.negated:
            want = not want
        if want:
            return any(
                _compare_possible(src, il.field, plan_pb2.COMPARE_OP_EQ, value, True)
                for value in il.values
            )
        has_null = any(value.WhichOneof("kind") is None for value in il.values)
        return not has_null and src.present(il.field) > 0
    if kind == "like":
        like = expr.like
        st = src.stats(like.field).get(v.STRING)
        if st is None or st.count == 0:
            return False
        if want == like.negated:
            return True
        prefix = literal_prefix(like.pattern)
        # A string starting with `prefix` is >= it, and its first len(prefix) characters are
        # >= those of the smallest string.
        return not prefix or (st.max >= prefix and st.min[: len(prefix)] <= prefix)
    if kind == "is_null":
        present = src.present(expr.is_null.field)
        null_wanted = want != expr.is_null.negated
        return present < src.n if null_wanted else present > 0
    if kind == "junction":
        j = expr.junction
        results = (_possible(o, src, want) for o in j.operands)
        if (j.op == plan_pb2.JUNCTION_OP_AND) == want:
            return all(results)
        return any(results)
    if kind == "not":
        return _possible(not_operand(expr), src, not want)
    return True


def _compare_possible(
    src: _SegmentStats, field: str, op: int, literal: events_pb2.Value, want: bool
) -> bool:
    kinds, lit = _comparable_types(literal)
    if isinstance(lit, float) and math.isnan(lit):
        return bool(kinds)
    stats = src.stats(field)
    for kind in kinds:
        st = stats.get(kind)
        if st is None or st.count == 0:
            continue
        if want:
            if _range_possible(src, field, kind, st, op, lit):
                return True
        elif kind == v.FLOAT or _range_possible(src, field, kind, st, _NEGATED_OP[op], lit):
            # NaN compares false with everything but !=: a float column may be false anywhere.
            return True
    return False


def _range_possible(
    src: _SegmentStats, field: str, kind: int, st: ColumnStats, op: int, lit: Any
) -> bool:
    """Whether some value in [st.min, st.max] may satisfy `value <op> lit`, compared as the
    filter compares (numbers in numpy, so an int column against a float literal in float64)."""
    low, high = st.min, st.max
    if low is None or high is None:
        return True
    if kind == v.FLOAT:
        if math.isnan(low):
            # Every value is NaN: only != holds.
            return op == plan_pb2.COMPARE_OP_NE
        if op == plan_pb2.COMPARE_OP_NE:
            return True  # NaN values, which the stats ignore, are != anything
    convert = _SCALAR_TYPES.get(kind)
    if convert is not None:
        # numpy scalars, so that int against float compares in float64 as over the column.
        low, high = convert(low), convert(high)

    def holds(o: int, value: Any) -> bool:
        return bool(COMPARE_OPS[o](value, lit)) if convert is not None else _PY_OPS[o](value, lit)

    if op == plan_pb2.COMPARE_OP_EQ:
        if not (holds(plan_pb2.COMPARE_OP_LE, low) and holds(plan_pb2.COMPARE_OP_GE, high)):
            return False
        dictionary = src.dictionary(field) if kind == v.STRING else None
        if dictionary is not None:
            i = int(np.searchsorted(dictionary, lit))
            return i < len(dictionary) and dictionary[i] == lit
        return True
    if op == plan_pb2.COMPARE_OP_NE:
        return not (holds(plan_pb2.COMPARE_OP_EQ, low) and holds(plan_pb2.COMPARE_OP_EQ, high))
    if op in (plan_pb2.COMPARE_OP_LT, plan_pb2.COMPARE_OP_LE):
        return holds(op, low)
    return holds(op, high)


def evaluate(expr: plan_pb2.Expr, seg: ScanSegment) -> Truth:
    """(true, false) masks of `expr` over the segment's rows."""
    return Filter(expr).truth(seg)
