"""Arithmetic of computed columns on typed sparse columns: ints and floats (other types give
NULL), int op int stays int but for division, int overflow and division or modulo by zero give
NULL (plan.proto's ScalarFunction). Vectorised over the rows where both operands hold a
number."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.storage.segment import ColumnView
from flakehouse.storage.sparse import Column, align, assemble, take

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

_INT64_MIN = np.iinfo(np.int64).min

BINARY = frozenset(
    {
        plan_pb2.SCALAR_FUNCTION_ADD,
        plan_pb2.SCALAR_FUNCTION_SUBTRACT,
        plan_pb2.SCALAR_FUNCTION_MULTIPLY,
        plan_pb2.SCALAR_FUNCTION_DIVIDE,
        plan_pb2.SCALAR_FUNCTION_MODULO,
    }
)


def _int_add(x: Ints, y: Ints) -> tuple[Ints, Mask]:
    r = x + y  # wraps; an overflow flips the sign away from both operands'
    return r, ((x ^ r) & (y ^ r)) >= 0


def _int_subtract(x: Ints, y: Ints) -> tuple[Ints, Mask]:
    r = x - y
    return r, ((x ^ y) & (x ^ r)) >= 0


def _int_multiply(x: Ints, y: Ints) -> tuple[Ints, Mask]:
    r = x * y
    # Exact where the wrapped product divided back gives the other operand; MIN * -1 wraps onto
    # MIN, whose division by -1 wraps too, so it is caught apart.
    divisor = np.where(x == 0, 1, x)
    with np.errstate(all="ignore"):
        ok = (x == 0) | (r // divisor == y)
    ok &= ~((x == -1) & (y == _INT64_MIN))
    return r, ok


def _int_modulo(x: Ints, y: Ints) -> tuple[Ints, Mask]:
    ok = y != 0
    with np.errstate(all="ignore"):
        # fmod: the remainder takes the dividend's sign, as in DuckDB (and C), not Python's %.
        return np.fmod(x, np.where(ok, y, 1)), ok


FloatOp = Callable[[Floats, Floats], tuple[Floats, Mask | None]]
"""A float operation: the results, and where they are not NULL (None: everywhere)."""


def _float_plain(op: Callable[[Floats, Floats], Floats]) -> FloatOp:
    def apply(x: Floats, y: Floats) -> tuple[Floats, Mask | None]:
        with np.errstate(all="ignore"):
            return op(x, y), None

    return apply


def _float_by_nonzero(op: Callable[[Floats, Floats], Floats]) -> FloatOp:
    def apply(x: Floats, y: Floats) -> tuple[Floats, Mask | None]:
        with np.errstate(all="ignore"):
            return op(x, y), y != 0

    return apply


_INT_OPS: dict[int, Callable[[Ints, Ints], tuple[Ints, Mask]]] = {
    plan_pb2.SCALAR_FUNCTION_ADD: _int_add,
    plan_pb2.SCALAR_FUNCTION_SUBTRACT: _int_subtract,
    plan_pb2.SCALAR_FUNCTION_MULTIPLY: _int_multiply,
    plan_pb2.SCALAR_FUNCTION_MODULO: _int_modulo,
}
"""DIVIDE is missing: it is float division, ints or not."""
_FLOAT_OPS: dict[int, FloatOp] = {
    plan_pb2.SCALAR_FUNCTION_ADD: _float_plain(np.add),
    plan_pb2.SCALAR_FUNCTION_SUBTRACT: _float_plain(np.subtract),
    plan_pb2.SCALAR_FUNCTION_MULTIPLY: _float_plain(np.multiply),
    plan_pb2.SCALAR_FUNCTION_DIVIDE: _float_by_nonzero(np.divide),
    plan_pb2.SCALAR_FUNCTION_MODULO: _float_by_nonzero(np.fmod),
}


def _numbers(col: Column) -> list[tuple[int, ColumnView]]:
    return [(kind, col[kind]) for kind in (v.INT, v.FLOAT) if kind in col and col[kind].count]


def binary(function: int, left: Column, right: Column, n: int) -> Column:
    """`left <function> right` on the rows where both hold a number."""
    pieces: dict[int, list[ColumnView]] = {v.INT: [], v.FLOAT: []}
    for left_kind, a in _numbers(left):
        for right_kind, b in _numbers(right):
            rows, (at_a, at_b) = align([a, b], n)
            if not len(rows):
                continue
            assert a.values is not None and b.values is not None
            x, y = take(a.values, at_a), take(b.values, at_b)
            ok: Mask | None
            values: npt.NDArray[Any]
            if left_kind == right_kind == v.INT and function in _INT_OPS:
                kind = v.INT
                values, ok = _INT_OPS[function](x, y)
            else:
                kind = v.FLOAT
                values, ok = _FLOAT_OPS[function](
                    x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
                )
            if ok is not None and not ok.all():
                rows, values = rows[ok], values[ok]
            pieces[kind].append(ColumnView(rows, values=values))
    return assemble(pieces)


def negate(operand: Column) -> Column:
    out: Column = {}
    ints = operand.get(v.INT)
    if ints is not None and ints.count:
        assert ints.values is not None
        ok = ints.values != _INT64_MIN  # -MIN is beyond int64
        if ok.all():
            out[v.INT] = ColumnView(ints.rows, values=-ints.values)
        elif ok.any():
            out[v.INT] = ColumnView(ints.rows[ok], values=-ints.values[ok])
    floats = operand.get(v.FLOAT)
    if floats is not None and floats.count:
        assert floats.values is not None
        out[v.FLOAT] = ColumnView(floats.rows, values=-floats.values)
    return out
