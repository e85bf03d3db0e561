"""Expressions the query service evaluates itself, after the merge: output columns, HAVING and
ORDER BY over merged groups, and the total order used to sort answers.

Logic is SQL's three-valued one: a comparison with NULL, or between values of different types
(a string never silently becomes a number), is unknown (None), and only True keeps a row.
"""

from __future__ import annotations

import heapq
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard, TypeVar

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


def is_number(value: Cell) -> TypeGuard[int | float]:
    # bool is an int subclass in Python but a type of its own in Flakehouse.
    return isinstance(value, int | float) and not isinstance(value, bool)


Ref = KeyRef | AggRef | FieldRef


def evaluate(expr: ValueExpr, env: Env) -> Cell:
    """The value of `expr` in `env`; predicates give True, False or None (unknown)."""

    def column(ref: Ref) -> list[Cell]:
        match ref:
            case KeyRef(index):
                return [env.keys[index]]
            case AggRef(index):
                return [env.aggregates[index]]
        return [env.fields[ref.index]]

    return evaluate_columns(expr, column, 1)[0]


def evaluate_columns(expr: ValueExpr, column: Callable[[Ref], list[Cell]], size: int) -> list[Cell]:
    """The values of `expr` over `size` rows, given the column of cells of each reference.

    A column at a time: one pass per expression node rather than a tree walk per row, and
    where a column holds only numbers (or only strings), comparisons and arithmetic are mapped
    in C over it.
    """

    def values(e: ValueExpr) -> list[Cell]:
        return evaluate_columns(e, column, size)

    match expr:
        case KeyRef() | AggRef() | FieldRef():
            return column(expr)
        case Lit(value):
            return [value] * size
        case Arith(op, left, right):
            if op not in _ARITH:
                raise ValueError(f"unknown arithmetic operator {op!r}")
            lhs, rhs = values(left), values(right)
            if op != "/" and _only(lhs, _NUMBERS) and _only(rhs, _NUMBERS):
                return list(map(_OPERATORS[op], lhs, rhs))
            return list(map(_ARITH[op], lhs, rhs))
        case Negate(operand):
            return [_negate(v) for v in values(operand)]
        case Cmp(op, left, right):
            if op not in _COMPARE:
                raise ValueError(f"unknown comparison {op!r}")
            lhs, rhs = values(left), values(right)
            cmp = _COMPARE[op]
            if (_only(lhs, _NUMBERS) and _only(rhs, _NUMBERS)) or (
                _only(lhs, _STRINGS) and _only(rhs, _STRINGS)
            ):
                return list(map(cmp, lhs, rhs))
            return [_compared(cmp, a, b) for a, b in zip(lhs, rhs, strict=True)]
        case BoolOp(op, operands):
            columns = [values(o) for o in operands]
            return [_junction(op, row) for row in zip(*columns, strict=True)]
        case NotOp(operand):
            return [_not(v) for v in values(operand)]
        case IsNullOp(operand, negated):
            return [(v is None) != negated for v in values(operand)]
        case InOp(operand, listed, negated):
            return [_in_list(v, listed, negated) for v in values(operand)]
        case LikeOp():
            like = expr
            return [_like(like, v) for v in values(expr.operand)]
    raise TypeError(f"not an expression: {expr!r}")


_NUMBERS = frozenset({int, float})
_STRINGS = frozenset({str})


def _only(cells: list[Cell], kinds: frozenset[type]) -> bool:
    """Whether every cell has one of these exact types (no NULL, no bool posing as an int)."""
    return set(map(type, cells)) <= kinds


def _negate(value: Cell) -> Cell:
    return -value if is_number(value) else None


def _not(value: Cell) -> Cell:
    return None if value is None else not value


def _like(expr: LikeOp, value: Cell) -> bool | None:
    if not isinstance(value, str):
        return None
    return expr.matches(value) != expr.negated


def _comparable(left: Cell, right: Cell) -> bool:
    if is_number(left) and is_number(right):
        return True
    return type(left) is type(right) and isinstance(left, str | bool)


# mypy cannot see that _comparable paired the types, hence Any.
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compare(op: str, left: Cell, right: Cell) -> bool | None:
    """SQL comparison: None when either side is NULL or the types cannot be compared."""
    if op not in _COMPARE:
        raise ValueError(f"unknown comparison {op!r}")
    return _compared(_COMPARE[op], left, right)


def _compared(cmp: Callable[[Any, Any], bool], left: Cell, right: Cell) -> bool | None:
    if left is None or right is None or not _comparable(left, right):
        return None
    return cmp(left, right)


def _numbers(operation: Callable[[Any, Any], Cell]) -> Callable[[Cell, Cell], Cell]:
    """`operation` on two numbers; NULL when either side is anything else."""

    def apply(left: Cell, right: Cell) -> Cell:
        if not (is_number(left) and is_number(right)):
            return None
        return operation(left, right)

    return apply


def _divide(a: float, b: float) -> float | None:
    # Float division as in DuckDB; x / 0 is NULL rather than an error for the whole query.
    return None if b == 0 else a / b


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}
_ARITH: dict[str, Callable[[Cell, Cell], Cell]] = {
    "+": _numbers(operator.add),
    "-": _numbers(operator.sub),
    "*": _numbers(operator.mul),
    "/": _numbers(_divide),
}


def _junction(op: str, values: Sequence[Cell]) -> bool | None:
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
    # Same rank: both numbers, both strings or both bools, which mypy cannot see.
    result = (left > right) - (left < right)  # type: ignore[operator]
    return -result if descending else result


def _is_nan(value: Scalar) -> bool:
    return isinstance(value, float) and math.isnan(value)


def sort_column(cells: Sequence[Cell], descending: bool = False) -> list[Any]:
    """Sort keys for a column of cells: ordered with `<`, they order the cells as
    `compare_for_sort(a, b, descending)` does (equal keys: a tie).

    Sorting by these keys runs its comparisons in C, rather than a Python comparator per pair.
    The keys of a column of numbers (no NaN) are the numbers, or their negations under DESC; of
    strings in ascending order, the strings; else (rank, value) pairs, the rank putting the types
    (and NaN) in order. Strings under DESC are keyed by minus their rank among the column's
    strings: a string cannot be negated.
    """
    kinds = set(map(type, cells))
    if kinds <= _NUMBER_TYPES and not (float in kinds and any(c != c for c in cells)):
        # Every cell is a number (kinds says so; mypy cannot narrow a list from it).
        return [-c for c in cells] if descending else list(cells)  # type: ignore[operator]
    if kinds == {str} and not descending:
        return list(cells)
    ranks: dict[str, int] = {}
    if descending and str in kinds:
        strings = sorted({c for c in cells if isinstance(c, str)})
        ranks = {text: -i for i, text in enumerate(strings)}
    return [_sort_pair(c, descending, ranks) for c in cells]


_NUMBER_TYPES = frozenset({int, float})
_NULL_PAIR = (4, 0)


def _sort_pair(cell: Cell, descending: bool, ranks: dict[str, int]) -> tuple[int, Any]:
    if cell is None:
        return _NULL_PAIR
    if isinstance(cell, bool):
        return (3, not cell) if descending else (3, cell)
    if isinstance(cell, str):
        return (2, ranks[cell]) if descending else (2, cell)
    if cell != cell:  # NaN: the greatest number
        return (0, 0) if descending else (1, 0)
    return (1, -cell) if descending else (0, cell)


# With LIMIT k among n rows, a heap finds the first k in O(n log k) when k is this much smaller.
_HEAP_FACTOR = 8


def ordered(columns: Sequence[Sequence[Any]], count: int | None = None) -> list[int]:
    """Positions of the items in the order of `columns` (each from `sort_column`, one key per
    item), then by position: full ties keep their order. With `count`, only the first `count`."""
    if not columns:
        raise ValueError("ordered() needs at least one sort column")
    size = len(columns[0])
    keys: Sequence[Any] = columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))
    if count is not None and count * _HEAP_FACTOR < size:
        # Equivalent to sorted(...)[:count], ties included.
        return heapq.nsmallest(count, range(size), key=keys.__getitem__)
    positions = sorted(range(size), key=keys.__getitem__)
    return positions if count is None else positions[:count]


T = TypeVar("T")


def sort_by(items: Sequence[T], keys: Sequence[tuple[Callable[[T], Cell], bool]]) -> list[T]:
    """`items` sorted by each (key function, descending) in turn; stable for full ties."""
    if not keys:
        return list(items)
    columns = [sort_column([key(item) for item in items], descending) for key, descending in keys]
    return [items[i] for i in ordered(columns)]
