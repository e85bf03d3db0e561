"""Filters over one segment with SQL three-valued logic: every predicate gives a (true, false)
pair of row masks, and a row in neither is unknown (NULL). Only true rows are kept."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events import values as v
from flakehouse.storage.segment import TIMESTAMP, ColumnView, SegmentView

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


def not_operand(expr: plan_pb2.Expr) -> plan_pb2.Expr:
    # `not` is a Python keyword: the generated class only offers it through getattr.
    operand: plan_pb2.Expr = getattr(expr, "not").operand
    return operand


class ScanSegment:
    """A segment under evaluation, caching what several expressions share."""

    def __init__(self, view: SegmentView) -> None:
        self.view = view
        self.n = view.row_count
        self.timestamps = view.timestamps
        self._all_rows: Index | None = None
        self._present: dict[str, Mask] = {}

    def columns(self, field: str) -> dict[int, ColumnView]:
        if field == TIMESTAMP:
            if self._all_rows is None:
                self._all_rows = np.arange(self.n, dtype=np.intp)
            return {v.INT: ColumnView(self._all_rows, values=self.timestamps)}
        return self.view.columns.get(field, {})

    def present(self, field: str) -> Mask:
        """Rows holding a value of `field` in any type."""
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


def _string_compare(col: ColumnView, op: int, literal: str) -> Mask:
    """Compares a string column with a literal by binary search in its sorted dictionary."""
    assert col.codes is not None and col.dictionary is not None
    codes = col.codes
    lo = int(np.searchsorted(col.dictionary, literal, side="left"))
    hi = int(np.searchsorted(col.dictionary, literal, side="right"))
    if op == plan_pb2.COMPARE_OP_EQ:
        return codes == lo if hi > lo else np.zeros(len(codes), dtype=bool)
    if op == plan_pb2.COMPARE_OP_NE:
        return codes != lo if hi > lo else np.ones(len(codes), dtype=bool)
    if op == plan_pb2.COMPARE_OP_LT:
        return codes < lo
    if op == plan_pb2.COMPARE_OP_LE:
        return codes < hi
    if op == plan_pb2.COMPARE_OP_GT:
        return codes >= hi
    return codes >= lo


def _comparable_types(literal: events_pb2.Value) -> tuple[tuple[int, ...], Any]:
    kind = literal.WhichOneof("kind")
    if kind == "int_value" or kind == "float_value":
        return (v.INT, v.FLOAT), getattr(literal, kind)
    if kind == "string_value":
        return (v.STRING,), literal.string_value
    if kind == "bool_value":
        return (v.BOOL,), literal.bool_value
    return (), None


def _compare(seg: ScanSegment, field: str, op: int, literal: events_pb2.Value) -> Truth:
    """field <op> literal: unknown where the row has no value of a comparable type (and
    everywhere for a NULL literal)."""
    kinds, lit = _comparable_types(literal)
    true = seg.falses()
    known = seg.falses()
    columns = seg.columns(field)
    for kind in kinds:
        col = columns.get(kind)
        if col is None:
            continue
        if kind == v.STRING:
            hit = _string_compare(col, op, lit)
        else:
            hit = COMPARE_OPS[op](col.values, lit)
        known[col.rows] = True
        true[col.rows[hit]] = True
    return true, known & ~true


def _like_regex(pattern: str) -> re.Pattern[str]:
    # SQL LIKE without an escape character (DuckDB's default): % any run, _ any one character.
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _like(seg: ScanSegment, like: plan_pb2.Like) -> Truth:
    true = seg.falses()
    known = seg.falses()
    col = seg.columns(like.field).get(v.STRING)
    if col is not None:
        assert col.codes is not None and col.dictionary is not None
        regex = _like_regex(like.pattern)
        entries = col.dictionary.tolist()
        per_entry = np.fromiter(
            (regex.fullmatch(s) is not None for s in entries), dtype=bool, count=len(entries)
        )
        known[col.rows] = True
        true[col.rows[per_entry[col.codes]]] = True
    false = known & ~true
    return (false, true) if like.negated else (true, false)


def _in_list(seg: ScanSegment, in_list: plan_pb2.InList) -> Truth:
    """IN is true when some listed value equals the row's; false when the row has a value and
    none matches (unless the list holds NULL); else unknown. NOT IN is its negation, so
    NOT (x IN l) and x NOT IN l always agree."""
    true = seg.falses()
    has_null = False
    for value in in_list.values:
        if value.WhichOneof("kind") is None:
            has_null = True
            continue
        hit, _ = _compare(seg, in_list.field, plan_pb2.COMPARE_OP_EQ, value)
        true |= hit
    false = seg.falses() if has_null else seg.present(in_list.field) & ~true
    return (false, true) if in_list.negated else (true, false)


def evaluate(expr: plan_pb2.Expr, seg: ScanSegment) -> Truth:
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        c = expr.compare
        return _compare(seg, c.field, c.op, c.value)
    if kind == "in_list":
        return _in_list(seg, expr.in_list)
    if kind == "like":
        return _like(seg, expr.like)
    if kind == "is_null":
        present = seg.present(expr.is_null.field)
        # Copies: the present mask is cached and callers may combine results in place.
        return (present.copy(), ~present) if expr.is_null.negated else (~present, present.copy())
    if kind == "junction":
        j = expr.junction
        if j.op == plan_pb2.JUNCTION_OP_AND:
            true, false = np.ones(seg.n, dtype=bool), seg.falses()
            for operand in j.operands:
                t, f = evaluate(operand, seg)
                true &= t
                false |= f
        else:
            true, false = seg.falses(), np.ones(seg.n, dtype=bool)
            for operand in j.operands:
                t, f = evaluate(operand, seg)
                true |= t
                false &= f
        return true, false
    if kind == "not":
        t, f = evaluate(not_operand(expr), seg)
        return f, t
    # The fragment checks plans before running them.
    raise AssertionError(f"unchecked expression {kind}")
