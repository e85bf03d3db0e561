"""Merging hand-built partial results and finalizing the answer."""

from __future__ import annotations

import gc
import itertools
import math
import random
from collections.abc import Sequence

import pytest

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.values import BOOL, FLOAT, INT, STRING, Scalar, from_value, to_value
from flakehouse.query.merge import PartialResultError, add_partial, finalize, merge_partials
from flakehouse.query.planner import PlannedQuery, plan_query
from flakehouse.sketches import DistinctState, QuantileState

UNSPECIFIED = events_pb2.VALUE_TYPE_UNSPECIFIED
Cell = Scalar | None


def plan(sql: str) -> PlannedQuery:
    return plan_query(sql, now_us=0)


def count(n: int) -> plan_pb2.AggregateState:
    return plan_pb2.AggregateState(count=n)


def total(
    n: int, int_sum: int = 0, float_sum: float = 0.0, float_seen: bool = False
) -> plan_pb2.AggregateState:
    return plan_pb2.AggregateState(count=n, int_sum=int_sum, sum=float_sum, float_seen=float_seen)


def extreme(value: Cell) -> plan_pb2.AggregateState:
    if value is None:
        return plan_pb2.AggregateState()
    return plan_pb2.AggregateState(extreme=to_value(value))


def group(key: Sequence[Cell], *states: plan_pb2.AggregateState) -> plan_pb2.GroupState:
    return plan_pb2.GroupState(key=[to_value(k) for k in key], states=states)


def groups(*states: plan_pb2.GroupState) -> plan_pb2.PartialResult:
    return plan_pb2.PartialResult(groups=states)


def rows(*values: Sequence[Cell]) -> plan_pb2.PartialResult:
    return plan_pb2.PartialResult(
        rows=[events_pb2.Row(values=[to_value(v) for v in row]) for row in values]
    )


def answer(
    planned: PlannedQuery, partials: Sequence[plan_pb2.PartialResult]
) -> tuple[list[tuple[str, int]], list[list[Cell]]]:
    columns, result = finalize(planned, merge_partials(planned, partials))
    return (
        [(c.name, c.type) for c in columns],
        [[from_value(v) for v in row.values] for row in result],
    )


def test_overlapping_groups_are_merged_and_ordered_by_key() -> None:
    planned = plan("SELECT suite, count(*) AS runs, count(duration) FROM ci GROUP BY suite")
    columns, result = answer(
        planned,
        [
            groups(group(["b"], count(2), count(1)), group(["a"], count(1), count(1))),
            groups(group(["b"], count(3), count(3)), group([None], count(4), count(0))),
            groups(group(["c"], count(1), count(0))),
        ],
    )
    assert columns == [("suite", STRING), ("runs", INT), ("count(duration)", INT)]
    # No ORDER BY: by group key, NULL last, so that answers are deterministic.
    assert result == [["a", 1, 1], ["b", 5, 4], ["c", 1, 0], [None, 4, 0]]


def test_group_keys_keep_types_apart() -> None:
    # True == 1 == 1.0 in Python, but they are different values of different columns.
    planned = plan("SELECT k, count(*) FROM ci GROUP BY k")
    _, result = answer(
        planned,
        [
            groups(group([1], count(1)), group([True], count(2)), group([1.0], count(4))),
            groups(group([True], count(8)), group(["1"], count(16))),
        ],
    )
    assert [(type(k), k, n) for k, n in result] == [
        (int, 1, 1),
        (float, 1.0, 4),
        (str, "1", 16),
        (bool, True, 10),
    ]


def test_multi_key_groups_with_nulls() -> None:
    planned = plan("SELECT a, b, count(*) FROM ci GROUP BY a, b")
    _, result = answer(
        planned,
        [
            groups(group(["x", None], count(1)), group([None, 2], count(1))),
            groups(group(["x", None], count(1)), group(["x", 1], count(5))),
        ],
    )
    assert result == [["x", 1, 5], ["x", None, 2], [None, 2, 1]]


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


def test_result_column_types() -> None:
    planned = plan("SELECT k, sum(v), avg(v), max(v) FROM ci GROUP BY k")
    columns, _ = answer(
        planned,
        [
            groups(
                group(["a"], total(1, int_sum=2), total(1, int_sum=2), extreme(2)),
                group(["b"], total(0), total(0), extreme(None)),
                group(["c"], total(1, int_sum=1), total(1, int_sum=1), extreme("x")),
            )
        ],
    )
    # sum of ints is INT; avg is FLOAT; a column mixing int and string has no single type.
    assert [t for _, t in columns] == [STRING, INT, FLOAT, UNSPECIFIED]
    only_nulls, _ = answer(plan("SELECT max(v) FROM ci"), [])
    assert only_nulls == [("max(v)", UNSPECIFIED)]


def test_float_sums_do_not_depend_on_arrival_order() -> None:
    planned = plan("SELECT sum(v) FROM ci")
    partials = [
        groups(group([], total(1, float_sum=1e16, float_seen=True))),
        groups(group([], total(1, float_sum=1.0, float_seen=True))),
        groups(group([], total(1, float_sum=-1e16, float_seen=True))),
    ]
    assert answer(planned, partials)[1] == [[1.0]]
    assert answer(planned, partials[::-1])[1] == [[1.0]]


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


def test_global_aggregate_yields_one_row_without_partials() -> None:
    planned = plan("SELECT count(*), count(v), sum(v), avg(v), min(v) FROM ci")
    columns, result = answer(planned, [])
    assert result == [[0, 0, None, None, None]]
    assert [t for _, t in columns] == [INT, INT, UNSPECIFIED, UNSPECIFIED, UNSPECIFIED]
    # An empty-keyed group from storage is that same single row.
    _, merged = answer(
        planned, [groups(group([], count(2), count(1), total(1, 4), total(1, 4), extreme(4)))]
    )
    assert merged == [[2, 1, 4, 4.0, 4]]


def test_grouped_aggregate_without_groups_has_no_rows() -> None:
    assert answer(plan("SELECT k, count(*) FROM ci GROUP BY k"), [])[1] == []
    # HAVING can filter the single row of a global aggregate away.
    assert answer(plan("SELECT count(*) FROM ci HAVING count(*) > 0"), [])[1] == []


def test_having_on_a_hidden_aggregate() -> None:
    planned = plan("SELECT suite, count(*) FROM ci GROUP BY suite HAVING max(duration) > 2")
    _, result = answer(
        planned,
        [
            groups(
                group(["a"], count(1), extreme(1.5)),
                group(["b"], count(2), extreme(3.0)),
                group(["c"], count(3), extreme(None)),  # NULL > 2 is not true
            ),
            groups(group(["a"], count(1), extreme(2.5)), group(["d"], count(9), extreme("x"))),
        ],
    )
    # The hidden max(duration) is not in the output; 'x' > 2 compares to unknown.
    assert result == [["a", 2], ["b", 2]]


def test_order_by_alias_desc_with_limit_and_offset() -> None:
    planned = plan(
        "SELECT suite, count(*) AS runs FROM ci GROUP BY suite ORDER BY runs DESC LIMIT 2 OFFSET 1"
    )
    partials = [
        groups(group(["a"], count(5)), group(["b"], count(1)), group(["c"], count(3))),
        groups(group(["b"], count(6)), group(["d"], count(3)), group(["e"], count(2))),
    ]
    # runs: b 7, a 5, c 3, d 3, e 2; ties (c, d) break by the group key.
    assert answer(planned, partials)[1] == [["a", 5], ["c", 3]]
    everything = plan("SELECT suite, count(*) AS runs FROM ci GROUP BY suite ORDER BY runs DESC")
    assert [r[0] for r in answer(everything, partials)[1]] == ["b", "a", "c", "d", "e"]


def test_order_by_expression_and_nulls_last_in_both_directions() -> None:
    partials = [
        groups(
            group(["a"], total(2, int_sum=10)),
            group(["b"], total(0)),
            group(["c"], total(1, int_sum=1)),
        )
    ]
    ascending = plan("SELECT k, sum(v) / 2 AS half FROM ci GROUP BY k ORDER BY half")
    assert answer(ascending, partials)[1] == [["c", 0.5], ["a", 5.0], ["b", None]]
    descending = plan("SELECT k FROM ci GROUP BY k ORDER BY sum(v) DESC")
    assert answer(descending, partials)[1] == [["a"], ["c"], ["b"]]


def test_descending_order_over_mixed_types_keeps_the_type_order() -> None:
    planned = plan("SELECT k FROM ci GROUP BY k ORDER BY k DESC")
    keys: list[Cell] = [True, "b", None, 2.5, "a", 10, False]
    ordered = [r[0] for r in answer(planned, [groups(*[group([k], count(1)) for k in keys])])[1]]
    assert ordered == [10, 2.5, "b", "a", True, False, None]


def test_default_order_over_mixed_key_types() -> None:
    planned = plan("SELECT k, count(*) FROM ci GROUP BY k")
    keys: list[Cell] = [True, "b", None, 2.5, "a", 10, False]
    partials = [groups(*[group([k], count(1)) for k in keys])]
    ordered = [r[0] for r in answer(planned, partials)[1]]
    assert ordered == [2.5, 10, "a", "b", False, True, None]


def test_time_buckets_and_computed_columns() -> None:
    planned = plan(
        "SELECT time_bucket(timestamp, '1h') AS hour, count(*) AS n, sum(d) / count(*) AS mean"
        " FROM ci GROUP BY hour"
    )
    hour = 3_600_000_000
    _, result = answer(
        planned,
        [
            groups(group([2 * hour], count(2), total(2, float_sum=3.0, float_seen=True))),
            groups(
                group([hour], count(1), total(1, int_sum=1)),
                group([2 * hour], count(2), total(1, int_sum=1)),
            ),
        ],
    )
    assert result == [[hour, 1, 1.0], [2 * hour, 4, 1.0]]


def test_raw_rows_are_merge_sorted_limited_and_hidden_columns_dropped() -> None:
    planned = plan("SELECT name, d FROM ci ORDER BY d DESC, timestamp LIMIT 4")
    assert list(planned.plan.select_fields) == ["name", "d", "timestamp"]
    partials = [
        rows(["a", 3.5, 10], ["b", 2, 11], ["c", None, 12]),
        rows(["d", 3.5, 9], ["e", "x", 13], ["f", 1, 14]),
    ]
    columns, result = answer(planned, partials)
    # d DESC: numbers first (largest first, ties by timestamp), then strings, NULL last.
    assert result == [["d", 3.5], ["a", 3.5], ["b", 2], ["f", 1]]
    everything = plan("SELECT name, d FROM ci ORDER BY d DESC, timestamp")
    assert [r[0] for r in answer(everything, partials)[1]] == ["d", "a", "b", "f", "e", "c"]
    assert columns == [("name", STRING), ("d", UNSPECIFIED)]


def test_raw_rows_without_order_are_concatenated() -> None:
    planned = plan("SELECT name, flaky FROM ci LIMIT 3 OFFSET 1")
    partials = [rows(["a", True], ["b", None]), rows(["c", False], ["d", True])]
    columns, result = answer(planned, partials)
    assert result == [["b", None], ["c", False], ["d", True]]
    assert columns == [("name", STRING), ("flaky", BOOL)]


def test_raw_rows_nulls_last_ascending() -> None:
    planned = plan("SELECT n FROM ci ORDER BY n")
    assert answer(planned, [rows([None], [2]), rows([1], [None], ["z"])])[1] == [
        [1],
        [2],
        ["z"],
        [None],
        [None],
    ]


def distinct(*values: Cell) -> plan_pb2.AggregateState:
    return plan_pb2.AggregateState(sketch=DistinctState.from_values(values).to_bytes())


def quantiles(*values: float) -> plan_pb2.AggregateState:
    return plan_pb2.AggregateState(sketch=QuantileState.from_values(values).to_bytes())


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
    partial = groups(group([], plan_pb2.AggregateState(sketch=state)))
    with pytest.raises(PartialResultError, match=message):
        answer(plan(sql), [partial])


def test_scan_stats_are_summed() -> None:
    planned = plan("SELECT count(*) FROM ci")
    stats = plan_pb2.ScanStats(
        rows_scanned=10, rows_matched=4, segments_scanned=2, segments_skipped=1
    )
    merged = merge_partials(
        planned, [plan_pb2.PartialResult(stats=stats), plan_pb2.PartialResult(stats=stats)]
    )
    assert merged.stats == plan_pb2.ScanStats(
        rows_scanned=20, rows_matched=8, segments_scanned=4, segments_skipped=2
    )


@pytest.mark.parametrize(
    ("sql", "partial", "message"),
    [
        ("SELECT k, count(*) FROM ci GROUP BY k", groups(group([], count(1))), "group key has 0"),
        ("SELECT k, count(*) FROM ci GROUP BY k", groups(group(["a"])), "0 aggregate states"),
        ("SELECT count(*) FROM ci", rows([1]), "rows in the answer to an aggregate query"),
        ("SELECT a FROM ci", groups(group([], count(1))), "groups in the answer to a raw-rows"),
        ("SELECT a, b FROM ci", rows([1]), "a row has 1 values, expected 2"),
    ],
)
def test_partials_that_do_not_fit_the_plan(
    sql: str, partial: plan_pb2.PartialResult, message: str
) -> None:
    with pytest.raises(PartialResultError, match=message):
        merge_partials(plan(sql), [partial])


def test_nan_keys_are_one_group_and_int_float_ties_do_not_depend_on_arrival() -> None:
    planned = plan("SELECT k, count(*) FROM ci GROUP BY k")
    nan = float("nan")
    partials = [
        groups(group([nan], count(1)), group([1.0], count(2)), group([2], count(8))),
        groups(group([nan], count(4)), group([1], count(16)), group([2.0], count(32))),
    ]
    for ordering in (partials, partials[::-1]):
        _, result = answer(planned, ordering)
        assert [(type(k), n) for k, n in result] == [
            (int, 16),  # 1 and 1.0 tie in the order: the int first
            (float, 2),
            (int, 8),
            (float, 32),
            (float, 5),  # NaN: one group, the greatest number
        ]
        assert math.isnan(result[-1][0])  # type: ignore[arg-type]


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


def test_sketches_are_finalized_only_for_the_groups_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[bytes] = []
    original = QuantileState.from_bytes

    def counting(data: bytes) -> QuantileState:
        decoded.append(data)
        return original(data)

    monkeypatch.setattr(QuantileState, "from_bytes", counting)
    planned = plan("SELECT k, count(*) AS n, p95(v) FROM ci GROUP BY k ORDER BY n DESC LIMIT 3")
    partial = groups(*[group([f"k{i:03d}"], count(i), quantiles(float(i))) for i in range(200)])
    _, result = answer(planned, [partial])
    assert [row[:2] for row in result] == [["k199", 199], ["k198", 198], ["k197", 197]]
    assert len(decoded) == 3


def test_a_group_with_many_partial_sketches_is_folded() -> None:
    planned = plan("SELECT count(DISTINCT v), p50(v) FROM ci")
    partials = [groups(group([], distinct(i, i + 1), quantiles(float(i)))) for i in range(150)]
    assert answer(planned, partials)[1] == answer(planned, partials[::-1])[1]
    (row,) = answer(planned, partials)[1]
    assert row[0] == 151
    assert isinstance(row[1], float) and abs(row[1] - 74.5) <= 0.75


def test_partials_added_after_finalizing_count() -> None:
    planned = plan("SELECT k, count(DISTINCT v), max(v), avg(v) FROM ci GROUP BY k")
    merged = merge_partials(
        planned, [groups(group(["a"], distinct(1), extreme(1), total(1, int_sum=1)))]
    )
    first = finalize(planned, merged)[1]
    assert [from_value(v) for v in first[0].values] == ["a", 1, 1, 1.0]
    add_partial(planned, merged, groups(group(["a"], distinct(2), extreme(2), total(1, int_sum=2))))
    add_partial(planned, merged, groups(group(["a"], distinct(3), extreme(0), total(1, int_sum=6))))
    second = finalize(planned, merged)[1]
    assert [from_value(v) for v in second[0].values] == ["a", 3, 2, 3.0]


def test_a_limit_takes_the_same_rows_as_a_full_sort() -> None:
    keys = [f"k{i:04d}" for i in range(500)]
    partials = [
        groups(*[group([k], count((i * 37) % 11)) for i, k in enumerate(keys) if i % 3 != p])
        for p in range(3)
    ]
    everything = plan("SELECT k, count(*) AS n FROM ci GROUP BY k ORDER BY n DESC, k DESC")
    page = plan(
        "SELECT k, count(*) AS n FROM ci GROUP BY k ORDER BY n DESC, k DESC LIMIT 7 OFFSET 3"
    )
    assert answer(page, partials)[1] == answer(everything, partials)[1][3:10]
    raw = [rows(*[[k, (i * 13) % 5] for i, k in enumerate(keys) if i % 2 == p]) for p in range(2)]
    all_rows = plan("SELECT k, n FROM ci ORDER BY n DESC")
    first_rows = plan("SELECT k, n FROM ci ORDER BY n DESC LIMIT 9")
    assert answer(first_rows, raw)[1] == answer(all_rows, raw)[1][:9]


def test_rows_outlive_the_merge() -> None:
    planned = plan("SELECT k, count(*) FROM ci GROUP BY k")
    _, result = finalize(planned, merge_partials(planned, [groups(group(["a"], count(2)))]))
    gc.collect()
    assert [[from_value(v) for v in row.values] for row in result] == [["a", 2]]
    assert events_pb2.Row.FromString(result[0].SerializeToString()) == result[0]


def _random_partials(
    planned: PlannedQuery, rng: random.Random, how_many: int
) -> list[plan_pb2.PartialResult]:
    pool: list[Cell] = [None, 0, 1, 2.0, 2.5, float("nan"), "a", "b", "", True, False]
    values: list[Cell] = [None, 3, -1, 2.5, "x", "y", True]
    partials = []
    for _ in range(how_many):
        # One group per key in a partial: keys by type and repr, so that NaN is one key.
        keys = {
            repr([(type(k), k) for k in key]): key
            for key in (
                [rng.choice(pool) for _ in planned.plan.group_by] for _ in range(rng.randrange(6))
            )
        }
        partials.append(
            groups(
                *[
                    group(
                        key,
                        count(rng.randrange(5)),
                        total(
                            rng.randrange(1, 4),
                            int_sum=rng.randrange(-9, 9),
                            float_sum=rng.uniform(-1, 1),
                            float_seen=rng.random() < 0.5,
                        ),
                        extreme(rng.choice(values)),
                        distinct(*rng.sample(range(20), rng.randrange(4))),
                    )
                    for key in keys.values()
                ]
            )
        )
    return partials


@pytest.mark.parametrize("seed", range(20))
def test_answers_do_not_depend_on_the_order_partials_arrive(seed: int) -> None:
    rng = random.Random(seed)
    planned = plan(
        "SELECT k, count(*) AS n, avg(v), max(v), count(DISTINCT v) AS d FROM ci GROUP BY k"
        " HAVING count(*) >= 1 ORDER BY d DESC, n LIMIT 6"
    )
    partials = _random_partials(planned, rng, 4)
    expected = repr(answer(planned, partials))
    for _ in range(5):
        rng.shuffle(partials)
        assert repr(answer(planned, partials)) == expected
