"""The merged states of aggregates: exact sums and averages, MIN/MAX across types and NaN, and
the count-distinct and percentile sketches, from hand-built partial results."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from flakehouse.events.values import FLOAT, INT, STRING
from flakehouse.query.partial import PartialResultError
from services.query.tests.merge_helpers import (
    Cell,
    State,
    answer,
    count,
    distinct,
    extreme,
    group,
    groups,
    plan,
    quantiles,
    total,
)


def test_sum_and_avg_of_ints_floats_and_nothing() -> None:
    planned = plan("SELECT k, sum(v), avg(v) FROM ci GROUP BY k")
    big = 2**60 + 1  # beyond float precision: the int sum must stay exact
    _, result = answer(
        planned,
        [
            groups(
                group(["ints"], total(2, int_sum=big), total(2, int_sum=big)),
                group(["mixed"], total(2, int_sum=3), total(2, int_sum=3)),
                group(["none"], total(0), total(0)),
            ),
            groups(
                group(["ints"], total(1, int_sum=big), total(1, int_sum=big)),
                group(
                    ["mixed"],
                    total(2, float_sum=1.5, float_seen=True),
                    total(2, float_sum=1.5, float_seen=True),
                ),
                group(["none"], total(0), total(0)),
            ),
        ],
    )
    assert result == [
        ["ints", 2 * big, 2 * big / 3],
        ["mixed", 4.5, 4.5 / 4],
        ["none", None, None],
    ]
    assert type(result[0][1]) is int
    assert type(result[1][1]) is float
    assert result[0][1] == 2 * big  # exact, not rounded through a float


def test_float_sums_do_not_depend_on_arrival_order() -> None:
    planned = plan("SELECT sum(v) FROM ci")
    partials = [
        groups(group([], total(1, float_sum=1e16, float_seen=True))),
        groups(group([], total(1, float_sum=1.0, float_seen=True))),
        groups(group([], total(1, float_sum=-1e16, float_seen=True))),
    ]
    assert answer(planned, partials)[1] == [[1.0]]
    assert answer(planned, partials[::-1])[1] == [[1.0]]


@pytest.mark.parametrize(
    ("sums", "expected"),
    [
        # 2**53 + 1 is a tie between 2**53 and 2**53 + 2: the 2**-60 breaks it, upwards.
        ([2.0**53, 1.0, 2.0**-60], 2.0**53 + 2),
        ([1e308, 1e308, -1e308], 1e308),  # beyond floats on the way only
        ([math.inf, 1.0, 2.5], math.inf),
        ([math.inf, -math.inf, 1.0], math.nan),
        ([math.nan, 1.0, 2.0], math.nan),
    ],
)
def test_float_sums_are_exactly_rounded_whatever_the_order(
    sums: list[float], expected: float
) -> None:
    planned = plan("SELECT k, sum(v) FROM ci GROUP BY k")
    partials = [groups(group(["a"], total(1, float_sum=x, float_seen=True))) for x in sums]
    for ordering in itertools.permutations(partials):
        (row,) = answer(planned, list(ordering))[1]
        assert repr(row) == repr(["a", expected])


def test_int_sum_beyond_int64_is_answered_as_float() -> None:
    planned = plan("SELECT sum(v) FROM ci")
    partial = groups(group([], total(1, int_sum=2**62)))
    columns, result = answer(planned, [partial, partial, partial])
    assert result == [[float(3 * 2**62)]]
    assert columns == [("sum(v)", FLOAT)]


@pytest.mark.parametrize(
    ("extremes", "minimum", "maximum"),
    [
        ([3, 1.5, 7], 1.5, 7),
        ([2, None, -1], -1, 2),  # an unset extreme is no value
        (["b", "a", "c"], "a", "c"),
        # Numbers win over strings, strings over bools, in min and max alike.
        (["zzz", 5, "a"], 5, 5),
        ([True, "m", False], "m", "m"),
        ([False, True], False, True),
        ([1.0, 1], 1, 1),  # a tie of int and float answers the int whatever the order
        ([1, 1.0], 1, 1),
        ([None, None], None, None),
    ],
)
def test_min_max_across_partials_and_types(
    extremes: list[Cell], minimum: Cell, maximum: Cell
) -> None:
    planned = plan("SELECT min(v), max(v) FROM ci")
    partials = [groups(group([], extreme(e), extreme(e))) for e in extremes]
    _, result = answer(planned, partials)
    assert result == [[minimum, maximum]]
    assert [type(v) for v in result[0]] == [type(minimum), type(maximum)]


@pytest.mark.parametrize("reverse", [False, True])
def test_min_max_with_nan_across_partials(reverse: bool) -> None:
    planned = plan("SELECT k, min(v), max(v) FROM ci GROUP BY k")
    nan = float("nan")
    partials = [
        groups(group(["a"], extreme(nan), extreme(nan)), group(["b"], extreme(nan), extreme(nan))),
        groups(group(["a"], extreme(3), extreme(3)), group(["b"], extreme("x"), extreme("x"))),
        groups(group(["a"], extreme(5.5), extreme(5.5))),
    ]
    _, result = answer(planned, partials[::-1] if reverse else partials)
    # NaN never wins against a number, whatever the order; it beats a string, as numbers do.
    assert result[0] == ["a", 3, 5.5]
    assert result[1][0] == "b" and all(math.isnan(v) for v in result[1][1:])  # type: ignore[arg-type]


def test_count_distinct_merges_partials_and_keeps_types_apart() -> None:
    planned = plan("SELECT k, count(DISTINCT v) AS n FROM ci GROUP BY k ORDER BY n DESC")
    columns, result = answer(
        planned,
        [
            groups(group(["a"], distinct(1, 2, "x")), group(["b"], distinct(True))),
            groups(group(["a"], distinct(2, 2.0, "x", "y", False)), group(["c"], distinct())),
            groups(group(["b"], distinct(True, 1))),
        ],
    )
    assert columns == [("k", STRING), ("n", INT)]
    # a: 1, 2, 'x', 2.0, 'y', false; b: true, 1; c: no values.
    assert result == [["a", 6], ["b", 2], ["c", 0]]


def test_count_distinct_across_the_exact_limit() -> None:
    planned = plan("SELECT count(DISTINCT v) FROM ci")
    parts = [range(0, 3000), range(2000, 5000), range(4500, 60_000), range(59_000, 61_000)]
    answers = set()
    for order in itertools.permutations(parts):
        partials = [groups(group([], distinct(*p))) for p in order]
        (row,) = answer(planned, partials)[1]
        answers.add(row[0])
    # The answer does not depend on the order in which partitions reply.
    assert len(answers) == 1
    (estimate,) = answers
    assert isinstance(estimate, int) and abs(estimate / 61_000 - 1) < 0.02
    small = [
        groups(group([], distinct(*range(0, 3000)))),
        groups(group([], distinct(*range(2000, 4000)))),
    ]
    assert answer(planned, small)[1] == [[4000]]  # still exact


def test_percentiles_merge_partials() -> None:
    planned = plan(
        "SELECT k, p50(v), percentile(v, 0.9) AS p90, p99(v) FROM ci GROUP BY k ORDER BY k"
    )
    a = [float(x) for x in range(1, 101)]
    columns, result = answer(
        planned,
        [
            groups(
                group(["a"], quantiles(*a[:30]), quantiles(*a[:30]), quantiles(*a[:30])),
                group(["b"], quantiles(), quantiles(), quantiles()),
            ),
            groups(group(["a"], quantiles(*a[30:]), quantiles(*a[30:]), quantiles(*a[30:]))),
        ],
    )
    assert columns == [("k", STRING), ("p50(v)", FLOAT), ("p90", FLOAT), ("p99(v)", FLOAT)]
    assert result[1] == ["b", None, None, None]  # no numbers: NULL
    key, *values = result[0]
    assert key == "a"
    # quantile_cont over 1..100: 50.5, 90.1, 99.01 — within 1 %.
    for got, want in zip(values, [50.5, 90.1, 99.01], strict=True):
        assert isinstance(got, float) and abs(got - want) <= 0.01 * want


def test_percentiles_of_one_field_share_equal_states_only() -> None:
    planned = plan("SELECT k, p50(v), p90(v) FROM ci GROUP BY k")
    low, high = quantiles(*range(1, 11)), quantiles(*range(101, 111))
    _, result = answer(
        planned,
        [
            groups(
                group(["same"], low, low),
                # States that should be equal but are not: each answers from its own.
                group(["differ"], low, high),
            )
        ],
    )
    assert result[0][0] == "differ" and result[1][0] == "same"
    assert abs(result[0][1] - 5.5) < 0.1 and abs(result[0][2] - 109.1) < 1.2  # type: ignore[operator]
    assert abs(result[1][1] - 5.5) < 0.1 and abs(result[1][2] - 9.1) < 0.1  # type: ignore[operator]


def test_sketch_aggregates_over_no_rows() -> None:
    planned = plan("SELECT count(DISTINCT v), p95(v) FROM ci")
    assert answer(planned, [])[1] == [[0, None]]
    assert answer(planned, [groups(group([], distinct(), quantiles()))])[1] == [[0, None]]


def test_having_and_order_by_on_sketch_aggregates() -> None:
    planned = plan("SELECT k FROM ci GROUP BY k HAVING count(DISTINCT v) >= 2 ORDER BY p50(v) DESC")
    _, result = answer(
        planned,
        [
            groups(
                group(["slow"], distinct(1, 2), quantiles(10.0, 20.0)),
                group(["fast"], distinct(1, 2, 3), quantiles(1.0, 2.0)),
                group(["one"], distinct(1), quantiles(100.0)),
            )
        ],
    )
    assert result == [["slow"], ["fast"]]


@pytest.mark.parametrize(
    ("sql", "state", "message"),
    [
        ("SELECT count(DISTINCT v) FROM ci", b"junk", "bad sketch"),
        ("SELECT p50(v) FROM ci", b"FHQ\x01" + bytes(30), "bad sketch"),
        # A quantile state where a count-distinct state belongs, and the reverse.
        ("SELECT count(DISTINCT v) FROM ci", quantiles(1.0).sketch, "bad magic"),
        ("SELECT p50(v) FROM ci", distinct(1).sketch, "bad magic"),
    ],
)
def test_bad_sketches_are_refused(sql: str, state: bytes, message: str) -> None:
    # Sketches are decoded when finalized (or when a group holds too many states to keep).
    partial = groups(group([], State("sketch", sketch=state)))
    with pytest.raises(PartialResultError, match=message):
        answer(plan(sql), [partial])


def test_sketches_are_finalized_only_for_the_groups_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flakehouse.query import states

    asked: list[int] = []
    original = states.quantiles_of_groups

    def counting(groups: Any, qs: Any) -> Any:
        asked.append(len(groups))
        return original(groups, qs)

    monkeypatch.setattr(states, "quantiles_of_groups", counting)
    planned = plan("SELECT k, count(*) AS n, p95(v) FROM ci GROUP BY k ORDER BY n DESC LIMIT 3")
    partial = groups(*[group([f"k{i:03d}"], count(i), quantiles(float(i))) for i in range(200)])
    _, result = answer(planned, [partial])
    assert [row[:2] for row in result] == [["k199", 199], ["k198", 198], ["k197", 197]]
    assert asked == [3, 3]  # the helper finalizes twice (rows, then columnar): 3 groups each


def test_a_group_with_many_partial_sketches_is_folded() -> None:
    planned = plan("SELECT count(DISTINCT v), p50(v) FROM ci")
    partials = [groups(group([], distinct(i, i + 1), quantiles(float(i)))) for i in range(150)]
    assert answer(planned, partials)[1] == answer(planned, partials[::-1])[1]
    (row,) = answer(planned, partials)[1]
    assert row[0] == 151
    assert isinstance(row[1], float) and abs(row[1] - 74.5) <= 0.75
