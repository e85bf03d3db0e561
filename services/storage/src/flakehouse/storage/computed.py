"""The plan's computed columns (`$0`, `$1`, …) over a segment: each is evaluated on first use,
once per segment (ScanSegment keeps it), into a sparse column per type like a field's, so that
filters, group keys, aggregates and raw rows read it unchanged. The plan is checked first
(validation.py); arithmetic is in arithmetic.py, string functions in string_columns.py, the
calendar (date_trunc, time_bucket in a zone) in flakehouse.kernels.calendar."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels import calendar
from flakehouse.storage import arithmetic, string_columns
from flakehouse.storage.predicate import Filter, Mask, ScanSegment
from flakehouse.storage.segment import ColumnView
from flakehouse.storage.sparse import Column, assemble, constant, subset

Node = Callable[[ScanSegment], Column]
"""A compiled Scalar: its column over a segment."""
Ints = npt.NDArray[np.int64]


class ComputedColumns:
    """The computed columns of one plan, compiled once (CASE conditions into Filters, which
    keep their compiled patterns across segments)."""

    def __init__(self, scalars: Sequence[plan_pb2.Scalar]) -> None:
        self._nodes = [_compile(scalar) for scalar in scalars]

    def evaluate(self, seg: ScanSegment, index: int) -> Column:
        return self._nodes[index](seg)


def _compile(scalar: plan_pb2.Scalar) -> Node:
    kind = scalar.WhichOneof("kind")
    if kind == "field":
        name = scalar.field
        return lambda seg: seg.columns(name)
    if kind == "literal":
        value = v.from_value(scalar.literal)
        return lambda seg: constant(value, seg.all_rows())
    if kind == "call":
        return _compile_call(scalar.call)
    if kind == "case_when":
        return _compile_case(scalar.case_when)
    raise AssertionError(f"unchecked scalar {kind}")


def _compile_call(call: plan_pb2.ScalarCall) -> Node:
    function = call.function
    if function in string_columns.FUNCTIONS:
        return _compile_string_call(call)
    args = [_compile(arg) for arg in call.args]
    if function in arithmetic.BINARY:
        left, right = args
        return lambda seg: arithmetic.binary(function, left(seg), right(seg), seg.n)
    if function == plan_pb2.SCALAR_FUNCTION_NEGATE:
        (operand,) = args
        return lambda seg: arithmetic.negate(operand(seg))
    if function == plan_pb2.SCALAR_FUNCTION_COALESCE:
        return lambda seg: _coalesce(seg, args)
    if function == plan_pb2.SCALAR_FUNCTION_DATE_TRUNC:
        unit, zone = call.args[0].literal.string_value, call.args[2].literal.string_value
        times = args[1]
        return lambda seg: _times(times(seg), lambda ts: calendar.date_trunc(ts, unit, zone))
    if function == plan_pb2.SCALAR_FUNCTION_TIME_BUCKET:
        width, months = call.args[1].literal.int_value, call.args[2].literal.int_value
        zone = call.args[3].literal.string_value
        times = args[0]
        return lambda seg: _times(
            times(seg), lambda ts: calendar.time_bucket(ts, width, months, zone)
        )
    raise AssertionError(f"unchecked function {function}")


_CALENDAR_LIMIT_US = 1 << 62
"""The calendar kernels refuse timestamps this far from 1970 (about 146,000 years): beyond it,
their arithmetic would overflow. Such a value gets NULL rather than failing the query."""


def _times(col: Column, start: Callable[[Ints], Ints]) -> Column:
    """`start` (the unit's or bucket's start) of the INT values of `col`, in microseconds; other
    types give NULL."""
    ints = col.get(v.INT)
    if ints is None or not ints.count:
        return {}
    assert ints.values is not None
    rows, values = ints.rows, ints.values
    if values.min() <= -_CALENDAR_LIMIT_US or values.max() >= _CALENDAR_LIMIT_US:
        keep = np.flatnonzero((values > -_CALENDAR_LIMIT_US) & (values < _CALENDAR_LIMIT_US))
        rows, values = rows[keep], values[keep]
        if not len(keep):
            return {}
    return {v.INT: ColumnView(rows, values=start(values))}


def _compile_string_call(call: plan_pb2.ScalarCall) -> Node:
    string = _compile(call.args[0])
    rest: list[string_columns.Literal | Node] = [
        string_columns.Literal(v.from_value(arg.literal))
        if arg.WhichOneof("kind") == "literal"
        else _compile(arg)
        for arg in call.args[1:]
    ]
    function = call.function

    def evaluate(seg: ScanSegment) -> Column:
        args = [arg if isinstance(arg, string_columns.Literal) else arg(seg) for arg in rest]
        return string_columns.evaluate(function, string(seg), args, seg.n)

    return evaluate


def _coalesce(seg: ScanSegment, args: Sequence[Node]) -> Column:
    """Per row, the value of the first argument holding one."""
    filled = np.zeros(seg.n, dtype=bool)
    pieces: dict[int, list[ColumnView]] = {}
    for arg in args:
        kept = [(kind, _where(col, ~filled[col.rows])) for kind, col in arg(seg).items()]
        for kind, col in kept:
            if col is not None:
                pieces.setdefault(kind, []).append(col)
                filled[col.rows] = True
        if filled.all():
            break
    return assemble(pieces)


def _where(col: ColumnView, keep: Mask) -> ColumnView | None:
    """The values of `col` where `keep` (a mask over them) holds; None if none does."""
    if keep.all():
        return col
    if not keep.any():
        return None
    return subset(col, np.flatnonzero(keep))


def _compile_case(case: plan_pb2.CaseWhen) -> Node:
    branches = [(Filter(b.condition), _compile(b.value)) for b in case.branches]
    otherwise = _compile(case.otherwise) if case.HasField("otherwise") else None

    def evaluate(seg: ScanSegment) -> Column:
        remaining = np.ones(seg.n, dtype=bool)
        pieces: dict[int, list[ColumnView]] = {}
        taken: list[tuple[Mask, Node]] = []
        for condition, value in branches:
            # Unknown is not true: only the rows where the condition is TRUE take the branch.
            hit = condition.true(seg)
            hit &= remaining
            if hit.any():
                taken.append((hit, value))
                remaining &= ~hit
                if not remaining.any():
                    break
        if otherwise is not None and remaining.any():
            taken.append((remaining, otherwise))
        for rows, value in taken:
            for kind, col in value(seg).items():
                kept = _where(col, rows[col.rows])
                if kept is not None:
                    pieces.setdefault(kind, []).append(kept)
        return assemble(pieces)

    return evaluate
