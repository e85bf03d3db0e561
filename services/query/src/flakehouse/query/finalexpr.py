"""Expressions the query service evaluates itself, after the merge: output columns, HAVING and
ORDER BY over merged groups, and the total order used to sort answers.

Logic is SQL's three-valued one: a comparison with NULL, or between values of different types
(a string never silently becomes a number), is unknown (None), and only True keeps a row.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from flakehouse.events.values import Scalar

Cell = Scalar | None
"""A value in a result: a scalar, or None for SQL NULL."""


@dataclass(frozen=True)
class KeyRef:
    """The value of group key `index` (position in QueryPlan.group_by)."""

    index: int


@dataclass(frozen=True)
class AggRef:
    """The final value of aggregate `index` (position in QueryPlan.aggregates)."""

    index: int


@dataclass(frozen=True)
class FieldRef:
    """Raw-rows mode: the value of QueryPlan.select_fields[index] in a row."""

    index: int


@dataclass(frozen=True)
class Lit:
    value: Cell


@dataclass(frozen=True)
class Arith:
    """`left op right` with op one of + - * /; numbers only, / is float division."""

    op: str
    left: ValueExpr
    right: ValueExpr


@dataclass(frozen=True)
class Negate:
    operand: ValueExpr


@dataclass(frozen=True)
class Cmp:
    """`left op right` with op one of = != < <= > >=."""

    op: str
    left: ValueExpr
    right: ValueExpr


@dataclass(frozen=True)
class BoolOp:
    """AND / OR of the operands."""

    op: str
    operands: tuple[ValueExpr, ...]


@dataclass(frozen=True)
class NotOp:
    operand: ValueExpr


@dataclass(frozen=True)
class IsNullOp:
    operand: ValueExpr
    negated: bool = False


@dataclass(frozen=True)
class InOp:
    operand: ValueExpr
    values: tuple[Scalar, ...]
    negated: bool = False


@dataclass(frozen=True)
class LikeOp:
    operand: ValueExpr
    pattern: str
    negated: bool = False
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", like_regex(self.pattern))

    def matches(self, text: str) -> bool:
        return self._regex.fullmatch(text) is not None


ValueExpr = (
    KeyRef
    | AggRef
    | FieldRef
    | Lit
    | Arith
    | Negate
    | Cmp
    | BoolOp
    | NotOp
    | IsNullOp
    | InOp
    | LikeOp
)


@dataclass(frozen=True)
class SortKey:
    expr: ValueExpr
    descending: bool = False


@dataclass(frozen=True)
class Env:
    """What references resolve to: a merged group's keys and aggregates, or a raw row."""

    keys: Sequence[Cell] = ()
    aggregates: Sequence[Cell] = ()
    fields: Sequence[Cell] = ()


def like_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE as a regex: % any run of characters, _ one character; case-sensitive."""
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def is_number(value: Cell) -> bool:
    # bool is an int subclass in Python but a type of its own in Flakehouse.
    return isinstance(value, int | float) and not isinstance(value, bool)


def evaluate(expr: ValueExpr, env: Env) -> Cell:
    """The value of `expr` in `env`; predicates give True, False or None (unknown)."""
    match expr:
        case KeyRef(index):
            return env.keys[index]
        case AggRef(index):
            return env.aggregates[index]
        case FieldRef(index):
            return env.fields[index]
        case Lit(value):
            return value
        case Arith(op, left, right):
            return _arith(op, evaluate(left, env), evaluate(right, env))
        case Negate(operand):
            value = evaluate(operand, env)
            return -value if is_number(value) else None  # type: ignore[operator]
        case Cmp(op, left, right):
            return compare(op, evaluate(left, env), evaluate(right, env))
        case BoolOp(op, operands):
            return _junction(op, [evaluate(o, env) for o in operands])
        case NotOp(operand):
            value = evaluate(operand, env)
            return None if value is None else not value
        case IsNullOp(operand, negated):
            return (evaluate(operand, env) is None) != negated
        case InOp(operand, values, negated):
            return _in_list(evaluate(operand, env), values, negated)
        case LikeOp():
            value = evaluate(expr.operand, env)
            if not isinstance(value, str):
                return None
            return expr.matches(value) != expr.negated
    raise TypeError(f"not an expression: {expr!r}")


def _comparable(left: Cell, right: Cell) -> bool:
    if is_number(left) and is_number(right):
        return True
    return type(left) is type(right) and isinstance(left, str | bool)


def compare(op: str, left: Cell, right: Cell) -> bool | None:
    """SQL comparison: None when either side is NULL or the types cannot be compared."""
    if left is None or right is None or not _comparable(left, right):
        return None
    # mypy cannot see that _comparable paired the types.
    a, b = left, right
    if op == "=":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b  # type: ignore[operator]
    if op == "<=":
        return a <= b  # type: ignore[operator]
    if op == ">":
        return a > b  # type: ignore[operator]
    if op == ">=":
        return a >= b  # type: ignore[operator]
    raise ValueError(f"unknown comparison {op!r}")


def _arith(op: str, left: Cell, right: Cell) -> Cell:
    if not (is_number(left) and is_number(right)):
        return None
    a: int | float = left  # type: ignore[assignment]
    b: int | float = right  # type: ignore[assignment]
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        # Float division as in DuckDB; x / 0 is NULL rather than an error for the whole query.
        return None if b == 0 else a / b
    raise ValueError(f"unknown arithmetic operator {op!r}")


def _junction(op: str, values: list[Cell]) -> bool | None:
    decisive = op == "or"  # OR is decided by a True, AND by a False
    if any(v is not None and bool(v) is decisive for v in values):
        return decisive
    if any(v is None for v in values):
        return None
    return not decisive


def _in_list(value: Cell, values: tuple[Scalar, ...], negated: bool) -> bool | None:
    if value is None:
        return None
    results = [compare("=", value, v) for v in values]
    if any(results):
        return not negated
    # As in SQL: x NOT IN (…) is unknown, not true, when some member could not be compared.
    if any(r is None for r in results):
        return None
    return negated


def _type_rank(value: Scalar) -> int:
    if is_number(value):
        return 0
    if isinstance(value, str):
        return 1
    return 2


def compare_for_sort(left: Cell, right: Cell, descending: bool) -> int:
    """-1, 0 or 1: the order of two cells in ORDER BY.

    A total order over mixed types, the same as storage nodes use for their top rows (the merge
    of per-partition top-N is only right if both sides agree): numbers < strings < bools < NULL
    in both directions; a direction reverses the order within a type only. NaN is the greatest
    number, as in DuckDB.
    """
    if left is None or right is None:
        return (left is None) - (right is None)
    rank_left, rank_right = _type_rank(left), _type_rank(right)
    if rank_left != rank_right:
        return -1 if rank_left < rank_right else 1
    left_nan, right_nan = _is_nan(left), _is_nan(right)
    if left_nan or right_nan:
        return (left_nan - right_nan) * (-1 if descending else 1)
    result = (left > right) - (left < right)  # type: ignore[operator]
    return -result if descending else result


def _is_nan(value: Scalar) -> bool:
    return isinstance(value, float) and math.isnan(value)


T = TypeVar("T")


def sort_by(items: list[T], keys: Sequence[tuple[Callable[[T], Cell], bool]]) -> list[T]:
    """`items` sorted by each (key function, descending) in turn; stable for full ties."""
    if not keys:
        return list(items)

    def order(a: T, b: T) -> int:
        for key, descending in keys:
            result = compare_for_sort(key(a), key(b), descending)
            if result:
                return result
        return 0

    return sorted(items, key=functools.cmp_to_key(order))
