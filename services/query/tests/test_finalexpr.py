"""Post-merge expressions: SQL three-valued logic, arithmetic and the ORDER BY total order."""

from __future__ import annotations

import itertools
import math

import pytest

from flakehouse.query import finalexpr
from flakehouse.query.finalexpr import Cell

EMPTY = finalexpr.Env()


def lit(value: Cell) -> finalexpr.Lit:
    return finalexpr.Lit(value)


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("=", 1, 1.0, True),
        ("<", 1, 1.5, True),
        (">=", 2.5, 3, False),
        ("!=", "a", "b", True),
        ("<", "a", "b", True),
        ("=", True, True, True),
        ("<", False, True, True),
        # NULL, and values of different types, compare to unknown: a string never becomes a
        # number, and a bool is no int.
        ("=", None, 1, None),
        ("!=", 1, None, None),
        ("=", "1", 1, None),
        ("!=", "1", 1, None),
        ("=", True, 1, None),
        ("<", 0, False, None),
    ],
)
def test_compare(op: str, left: Cell, right: Cell, expected: bool | None) -> None:
    assert finalexpr.evaluate(finalexpr.Cmp(op, lit(left), lit(right)), EMPTY) is expected


T, F, U = lit(True), lit(False), lit(None)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (finalexpr.BoolOp("and", (T, T)), True),
        (finalexpr.BoolOp("and", (T, F)), False),
        (finalexpr.BoolOp("and", (U, F)), False),
        (finalexpr.BoolOp("and", (T, U)), None),
        (finalexpr.BoolOp("or", (F, F)), False),
        (finalexpr.BoolOp("or", (U, T)), True),
        (finalexpr.BoolOp("or", (F, U)), None),
        (finalexpr.NotOp(T), False),
        (finalexpr.NotOp(U), None),
        (finalexpr.IsNullOp(U), True),
        (finalexpr.IsNullOp(lit(0)), False),
        (finalexpr.IsNullOp(U, negated=True), False),
    ],
)
def test_three_valued_logic(expr: finalexpr.ValueExpr, expected: bool | None) -> None:
    assert finalexpr.evaluate(expr, EMPTY) is expected


@pytest.mark.parametrize(
    ("value", "values", "negated", "expected"),
    [
        (2, (1, 2.0), False, True),
        (3, (1, 2), False, False),
        (3, (1, 2), True, True),
        (2, (1, 2), True, False),
        (None, (1, 2), False, None),
        (None, (1, 2), True, None),
        # 3 NOT IN (1, 'x'): 3 = 'x' is unknown, so the whole is unknown as in SQL.
        (3, (1, "x"), True, None),
        ("x", (1, "x"), False, True),
    ],
)
def test_in_list(
    value: Cell, values: tuple[int | float | str, ...], negated: bool, expected: bool | None
) -> None:
    assert finalexpr.evaluate(finalexpr.InOp(lit(value), values, negated), EMPTY) is expected


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("test_%", "test_a", True),
        ("test_%", "test", False),
        ("a_c", "abc", True),
        ("a.c", "abc", False),  # regex characters are literal
        ("%[x]%", "a[x]b", True),
        ("%", "", True),
        ("ab", "AB", False),  # case-sensitive
        ("a%", "a\nb", True),
    ],
)
def test_like(pattern: str, text: str, expected: bool) -> None:
    assert finalexpr.evaluate(finalexpr.LikeOp(lit(text), pattern), EMPTY) is expected
    assert finalexpr.evaluate(finalexpr.LikeOp(lit(text), pattern, negated=True), EMPTY) is (
        not expected
    )


def test_like_on_non_strings_is_unknown() -> None:
    assert finalexpr.evaluate(finalexpr.LikeOp(lit(5), "5"), EMPTY) is None
    assert finalexpr.evaluate(finalexpr.LikeOp(lit(None), "%", negated=True), EMPTY) is None


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("+", 2, 3, 5),
        ("-", 2, 3.5, -1.5),
        ("*", 4, 5, 20),
        ("/", 7, 2, 3.5),
        ("/", 1, 0, None),
        ("+", 1, None, None),
        ("+", "a", 1, None),
        ("+", True, 1, None),
    ],
)
def test_arithmetic(op: str, left: Cell, right: Cell, expected: Cell) -> None:
    result = finalexpr.evaluate(finalexpr.Arith(op, lit(left), lit(right)), EMPTY)
    assert result == expected
    assert type(result) is type(expected)


def test_references_and_negation() -> None:
    env = finalexpr.Env(keys=["k"], aggregates=[10, None], fields=[1.5])
    assert finalexpr.evaluate(finalexpr.KeyRef(0), env) == "k"
    assert finalexpr.evaluate(finalexpr.AggRef(0), env) == 10
    assert finalexpr.evaluate(finalexpr.FieldRef(0), env) == 1.5
    assert finalexpr.evaluate(finalexpr.Negate(finalexpr.AggRef(0)), env) == -10
    assert finalexpr.evaluate(finalexpr.Negate(finalexpr.AggRef(1)), env) is None
    assert finalexpr.evaluate(finalexpr.Negate(lit(True)), env) is None


def test_sort_order_over_mixed_types_with_nulls_last() -> None:
    values: list[Cell] = [True, "b", None, 2.5, "a", 1, False, None, -3]
    ascending = finalexpr.sort_by(values, [(lambda v: v, False)])
    assert ascending == [-3, 1, 2.5, "a", "b", False, True, None, None]
    # Descending reverses the order within a type; types keep theirs, NULLs stay last.
    descending = finalexpr.sort_by(values, [(lambda v: v, True)])
    assert descending == [2.5, 1, -3, "b", "a", True, False, None, None]


def test_nan_is_the_greatest_number() -> None:
    nan = float("nan")
    values: list[Cell] = [nan, 1, None, "a", math.inf, -1.0]
    ascending = finalexpr.sort_by(values, [(lambda v: v, False)])
    assert ascending[:2] == [-1.0, 1]
    assert ascending[2] == math.inf and math.isnan(ascending[3])  # type: ignore[arg-type]
    assert ascending[4:] == ["a", None]
    descending = finalexpr.sort_by(values, [(lambda v: v, True)])
    assert math.isnan(descending[0])  # type: ignore[arg-type]
    assert descending[1:] == [math.inf, 1, -1.0, "a", None]


def test_sort_by_several_keys_is_stable() -> None:
    rows = [("a", 2, "first"), ("b", 1, "x"), ("a", 2, "second"), ("a", 3, "y"), (None, 9, "z")]
    ordered = finalexpr.sort_by(rows, [(lambda r: r[0], False), (lambda r: r[1], True)])
    assert ordered == [
        ("a", 3, "y"),
        ("a", 2, "first"),
        ("a", 2, "second"),
        ("b", 1, "x"),
        (None, 9, "z"),
    ]


TRICKY: list[Cell] = [
    None,
    0,
    -0.0,
    0.0,
    1,
    1.0,
    -1,
    2.5,
    2**53 + 1,
    float(2**53),
    -math.inf,
    math.inf,
    math.nan,
    "",
    "B",
    "a",
    "ab",
    True,
    False,
]


def _sign(a: object, b: object) -> int:
    return (a > b) - (a < b)  # type: ignore[operator]


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize(
    "cells",
    [
        TRICKY,
        [3, -1, 2**63, -(2**70), 0],  # only ints: the keys are the numbers
        [3, 1.5, -0.0, 0, math.inf, 2**53 + 1, float(2**53)],  # ints and floats, no NaN
        ["b", "", "a", "ab", "B"],  # only strings: the keys are the strings, or their ranks
        ["b", None, "a"],
        [True, False, None],
        [1.0, math.nan, -2],
    ],
)
def test_sort_keys_order_as_compare_for_sort(cells: list[Cell], descending: bool) -> None:
    keys = finalexpr.sort_column(cells, descending)
    for i, left in enumerate(cells):
        for j, right in enumerate(cells):
            expected = finalexpr.compare_for_sort(left, right, descending)
            assert _sign(keys[i], keys[j]) == expected, (left, right)


def test_ordered_takes_the_first_rows_with_a_heap_like_a_full_sort() -> None:
    values = [(i * 7919) % 101 for i in range(1_000)]  # many ties
    column = finalexpr.sort_column(values, descending=True)
    full = finalexpr.ordered([column])
    assert [values[i] for i in full] == sorted(values, reverse=True)
    # Ties keep their order: positions ascending among equal values.
    assert all(a < b for a, b in itertools.pairwise(full) if values[a] == values[b])
    for count in (0, 1, 7, 100, 999, 5_000):
        assert finalexpr.ordered([column], count) == full[:count]
    second = finalexpr.sort_column([i % 3 for i in range(1_000)])
    assert finalexpr.ordered([column, second], 10) == finalexpr.ordered([column, second])[:10]


def test_evaluating_columns_agrees_with_evaluating_rows() -> None:
    keys: list[Cell] = [1, 2.5, "a", None, True, 0, math.nan, -3, "b"]
    aggregates: list[Cell] = [2, 0, "a", 1, False, None, 1.5, 4, "c"]
    k, a = finalexpr.KeyRef(0), finalexpr.AggRef(0)
    expressions: list[finalexpr.ValueExpr] = [
        finalexpr.Arith("+", k, a),
        finalexpr.Arith("/", k, a),
        finalexpr.Arith("*", k, lit(2)),
        finalexpr.Negate(k),
        finalexpr.Cmp("<", k, a),
        finalexpr.Cmp("=", k, a),
        finalexpr.Cmp(">=", k, lit(1)),
        finalexpr.BoolOp("or", (finalexpr.Cmp(">", k, lit(0)), finalexpr.IsNullOp(a))),
        finalexpr.NotOp(finalexpr.Cmp("!=", a, lit("a"))),
        finalexpr.InOp(k, (1, "a"), negated=True),
        finalexpr.LikeOp(a, "%"),
    ]

    def column(ref: finalexpr.Ref) -> list[Cell]:
        return list(keys if isinstance(ref, finalexpr.KeyRef) else aggregates)

    for expr in expressions:
        by_row = [
            finalexpr.evaluate(expr, finalexpr.Env(keys=[x], aggregates=[y]))
            for x, y in zip(keys, aggregates, strict=True)
        ]
        by_column = finalexpr.evaluate_columns(expr, column, len(keys))
        assert repr(by_column) == repr(by_row), expr
    # Columns of only numbers (or only strings) take the fast path; same answers.
    numbers = finalexpr.evaluate_columns(finalexpr.Cmp("<", k, lit(2)), lambda ref: [1, 2.5, -3], 3)
    assert numbers == [True, False, True]
    strings = finalexpr.evaluate_columns(
        finalexpr.Cmp(">", k, lit("a")), lambda ref: ["b", "a", ""], 3
    )
    assert strings == [True, False, False]
    assert finalexpr.evaluate_columns(finalexpr.Arith("-", k, lit(1)), lambda ref: [1, 2.5], 2) == [
        0,
        1.5,
    ]
