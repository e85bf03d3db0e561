"""Merging hand-built partial results and finalizing the answer."""

from __future__ import annotations

import gc
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.columns import from_value_column
from flakehouse.events.values import (
    BOOL,
    FLOAT,
    INT,
    STRING,
    Scalar,
    from_value,
    to_value,
    type_of,
)
from flakehouse.kernels import numbering
from flakehouse.query import merge
from flakehouse.query.answer import finalize, to_response
from flakehouse.query.merge import add_partial, merge_partials
from flakehouse.query.partial import PartialResultError
from flakehouse.query.sql import PlannedQuery, plan_query
from flakehouse.sketches import DistinctState, QuantileState

UNSPECIFIED = events_pb2.VALUE_TYPE_UNSPECIFIED
Cell = Scalar | None
MEMBERS = {STRING: "string_values", INT: "int_values", FLOAT: "float_values", BOOL: "bool_values"}
# The StateColumn members each kind of state fills.
USES = {
    "count": ("counts",),
    "sum": ("counts", "sums", "int_sums", "float_seen"),
    "extreme": ("extremes",),
    "sketch": ("sketches",),
}


def plan(sql: str) -> PlannedQuery:
    return plan_query(sql, now_us=0)


@dataclass(frozen=True)
class State:
    """One group's state of one aggregate, as a storage node computes it."""

    kind: str
    count: int = 0
    sum: float = 0.0
    int_sum: int = 0
    float_seen: bool = False
    extreme: Cell = None
    sketch: bytes = b""


def count(n: int) -> State:
    return State("count", count=n)


def total(n: int, int_sum: int = 0, float_sum: float = 0.0, float_seen: bool = False) -> State:
    return State("sum", count=n, int_sum=int_sum, sum=float_sum, float_seen=float_seen)


def extreme(value: Cell) -> State:
    return State("extreme", extreme=value)


Group = tuple[Sequence[Cell], Sequence[State]]


def group(key: Sequence[Cell], *states: State) -> Group:
    return key, states


def value_column(cells: Sequence[Cell]) -> plan_pb2.ValueColumn:
    column = plan_pb2.ValueColumn()
    for cell in cells:
        if cell is None:
            column.types.append(UNSPECIFIED)
        else:
            kind = type_of(cell)
            column.types.append(kind)  # type: ignore[arg-type]
            getattr(column, MEMBERS[kind]).append(cell)
    return column


def state_column(states: Sequence[State]) -> plan_pb2.StateColumn:
    (kind,) = {state.kind for state in states}
    column = plan_pb2.StateColumn()
    uses = USES[kind]
    if "counts" in uses:
        column.counts.extend(state.count for state in states)
    if "sums" in uses:
        column.sums.extend(state.sum for state in states)
        column.int_sums.extend(state.int_sum for state in states)
        column.float_seen.extend(state.float_seen for state in states)
    if "extremes" in uses:
        column.extremes.CopyFrom(value_column([state.extreme for state in states]))
    if "sketches" in uses:
        column.sketches.extend(state.sketch for state in states)
    return column


def groups(*rows: Group) -> plan_pb2.PartialResult:
    """A partial result holding these groups, as columns."""
    if not rows:
        return plan_pb2.PartialResult()
    keys, states = zip(*rows, strict=True)
    columns = plan_pb2.GroupColumns(size=len(rows))
    columns.keys.extend(value_column(cells) for cells in zip(*keys, strict=True))
    columns.states.extend(state_column(column) for column in zip(*states, strict=True))
    return plan_pb2.PartialResult(group_columns=columns)


def rows(*values: Sequence[Cell]) -> plan_pb2.PartialResult:
    return plan_pb2.PartialResult(
        rows=[events_pb2.Row(values=[to_value(v) for v in row]) for row in values]
    )


def answer(
    planned: PlannedQuery, partials: Sequence[plan_pb2.PartialResult]
) -> tuple[list[tuple[str, int]], list[list[Cell]]]:
    merged = merge_partials(planned, partials)
    columns, result = finalize(planned, merged)
    cells = [[from_value(v) for v in row.values] for row in result]
    # The columnar answer holds the same cells, of the same types.
    columnar = to_response(planned, merged, columnar=True)
    assert not columnar.rows and list(columnar.columns) == columns
    by_column = [from_value_column(c) for c in columnar.column_values]
    assert [[repr(c) for c in row] for row in zip(*by_column, strict=True)] == [
        [repr(c) for c in row] for row in cells
    ]
    return [(c.name, c.type) for c in columns], cells


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


def distinct(*values: Cell) -> State:
    return State("sketch", sketch=DistinctState.from_values(values).to_bytes())


def quantiles(*values: float) -> State:
    return State("sketch", sketch=QuantileState.from_values(values).to_bytes())


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
    partial = groups(group([], State("sketch", sketch=state)))
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


def columns(
    size: int,
    keys: Sequence[plan_pb2.ValueColumn] = (),
    states: Sequence[plan_pb2.StateColumn] = (),
) -> plan_pb2.PartialResult:
    """A partial result with hand-made group columns, fitting or not."""
    return plan_pb2.PartialResult(
        group_columns=plan_pb2.GroupColumns(size=size, keys=keys, states=states)
    )


KEYS = "SELECT k, count(*) FROM ci GROUP BY k"
A = value_column(["a"])
ONE = plan_pb2.StateColumn(counts=[1])


@pytest.mark.parametrize(
    ("sql", "partial", "message"),
    [
        (KEYS, groups(group([], count(1))), "have 0 key columns, expected 1"),
        (KEYS, groups(group(["a"])), "have 0 state columns, expected 1"),
        (KEYS, columns(2, [A], [plan_pb2.StateColumn(counts=[1, 2])]), "1 values for 2 groups"),
        (KEYS, columns(1, [A], [plan_pb2.StateColumn(counts=[1, 2])]), "2 counts, expected 1"),
        (KEYS, columns(1, [A], [plan_pb2.StateColumn()]), "0 counts, expected 1"),
        (
            KEYS,
            columns(1, [A], [plan_pb2.StateColumn(counts=[1], sums=[1.0])]),
            "1 sums, expected 0",
        ),
        (
            KEYS,
            columns(1, [A], [plan_pb2.StateColumn(counts=[1], extremes=A)]),
            "has extremes, expected none",
        ),
        (
            KEYS,
            columns(1, [plan_pb2.ValueColumn(types=[STRING], int_values=[1])], [ONE]),
            "0 string_values for 1 values",
        ),
        (
            KEYS,
            columns(1, [plan_pb2.ValueColumn(types=[7], int_values=[1])], [ONE]),
            "unknown type 7",
        ),
        (
            KEYS,
            columns(2, [value_column(["a", "a"])], [plan_pb2.StateColumn(counts=[1, 2])]),
            "a group appears twice",
        ),
        (
            "SELECT count(*) FROM ci",
            columns(2, [], [plan_pb2.StateColumn(counts=[1, 2])]),
            "a group appears twice",
        ),
        (
            "SELECT max(v) FROM ci",
            columns(1, [], [plan_pb2.StateColumn(extremes=value_column([1, 2]))]),
            "2 values for 1 groups",
        ),
        (
            "SELECT max(v) FROM ci",
            columns(1, [], [plan_pb2.StateColumn(extremes=plan_pb2.ValueColumn(types=[INT]))]),
            "0 int_values for 1 values",
        ),
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


@pytest.mark.parametrize("keys", [["k"], ["k", "j"]])
def test_a_partial_that_does_not_fit_changes_nothing(keys: list[str]) -> None:
    planned = plan(f"SELECT {', '.join(keys)}, count(*), max(v) FROM ci GROUP BY {', '.join(keys)}")
    a, b, c = (tuple(name for _ in keys) for name in "abc")
    merged = merge_partials(planned, [groups(group(a, count(1), extreme(1)))])
    bad = groups(group(a, count(5), extreme(9)), group(b, count(1), extreme(2)))
    bad.group_columns.states[1].extremes.int_values.append(3)
    with pytest.raises(PartialResultError, match="3 int_values for 2 values"):
        add_partial(planned, merged, bad)
    # A group twice, after new ones: those are forgotten again.
    twice = groups(*[group(key, count(7), extreme(7)) for key in (b, c, (None,) * len(keys), c)])
    with pytest.raises(PartialResultError, match="a group appears twice"):
        add_partial(planned, merged, twice)
    add_partial(planned, merged, groups(group(c, count(2), extreme(2))))
    assert [[from_value(v) for v in row.values] for row in finalize(planned, merged)[1]] == [
        [*a, 1, 1],
        [*c, 2, 2],
    ]


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


# -- against a per-group reference -----------------------------------------------------------

NAN = float("nan")
KEY_POOL: list[Cell] = [None, 0, 1, 1.0, -0.0, NAN, 2**62, "1", "", "a", True, False]
EXTREME_POOL: list[Cell] = [
    None, 3, -1, 2**53 + 1, -(2**53) - 1, 2.5, 1.0, 1, float(2**53), 2**54, float(2**54), NAN,
    -math.inf,
    "x", "", True, False,
]  # fmt: skip


def _identity(cell: Cell) -> tuple[str, Cell]:
    """A key value as plan.proto sees it: its type and value, NaNs one value."""
    if isinstance(cell, float) and cell != cell:
        return ("float", "NaN")
    return (type(cell).__name__, cell)


def _priority(value: Cell) -> int:
    return 0 if isinstance(value, bool) else 1 if isinstance(value, str) else 2


def _better(new: Cell, old: Cell, maximum: bool) -> bool:
    """The documented MIN/MAX rules, one pair at a time."""
    if new is None:
        return False
    if old is None or _priority(new) != _priority(old):
        return old is None or _priority(new) > _priority(old)
    if new != new or old != old:
        return old != old and new == new
    if new == old:
        return type(new) is int and type(old) is float
    return new > old if maximum else new < old  # type: ignore[operator]


def _reference(
    partials: list[list[tuple[tuple[Cell, ...], list[State]]]],
) -> dict[tuple[tuple[str, Cell], ...], list[Cell]]:
    """{key identity: [key cells..., count, sum, avg, min, max]}, merged a group at a time."""
    merged: dict[tuple[tuple[str, Cell], ...], list[Any]] = {}
    for partial in partials:
        for key, (n, numbers, _, low, high) in partial:
            entry = merged.setdefault(
                tuple(map(_identity, key)), [key, 0, 0, 0, False, [], None, None]
            )
            entry[1] += n.count
            entry[2] += numbers.count
            entry[3] += numbers.int_sum
            entry[4] |= numbers.float_seen
            entry[5].append(numbers.sum)
            if _better(low.extreme, entry[6], maximum=False):
                entry[6] = low.extreme
            if _better(high.extreme, entry[7], maximum=True):
                entry[7] = high.extreme
    out: dict[tuple[tuple[str, Cell], ...], list[Cell]] = {}
    for identity, (key, n, count_, int_sum, seen, sums, low, high) in merged.items():
        total_: Cell = None
        mean: Cell = None
        if count_ and not seen:
            total_, mean = int_sum, int_sum / count_
        elif count_:
            total_ = float(int_sum) + math.fsum(sums)
            mean = total_ / count_
        out[identity] = [*key, _int64(n), _int64(total_), mean, low, high]
    return out


def _int64(value: Cell) -> Cell:
    """Beyond int64, an int is answered as the nearest float."""
    if type(value) is int and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def _random_groups(
    rng: random.Random, width: int, big: bool
) -> list[tuple[tuple[Cell, ...], list[State]]]:
    keys = {}
    for _ in range(rng.randrange(40)):
        key = tuple(rng.choice(KEY_POOL) for _ in range(width))
        keys[tuple(map(_identity, key))] = key
    magnitude = 2**62 if big else 1000
    out = []
    for key in keys.values():
        seen = rng.random() < 0.5
        numbers = total(
            rng.randrange(0, magnitude) if big and rng.random() < 0.3 else rng.randrange(4),
            int_sum=rng.randrange(-magnitude, magnitude),
            float_sum=rng.choice([0.0, 1e16, -1e16, 1.0, rng.uniform(-1, 1)]) if seen else 0.0,
            float_seen=seen,
        )
        states = [
            count(rng.randrange(0, magnitude)),
            numbers,
            numbers,
            extreme(rng.choice(EXTREME_POOL)),
            extreme(rng.choice(EXTREME_POOL)),
        ]
        out.append((key, states))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_merge_matches_a_per_group_reference(seed: int) -> None:
    rng = random.Random(seed)
    width = 1 + seed % 3
    names = ["a", "b", "c"][:width]
    planned = plan(
        f"SELECT {', '.join(names)}, count(*), sum(v), avg(v), min(v), max(v) FROM ci"
        f" GROUP BY {', '.join(names)}"
    )
    # Big values overflow int64 in the merge: Python ints from then on.
    partials = [_random_groups(rng, width, big=seed % 2 == 1) for _ in range(rng.randrange(1, 9))]
    expected = _reference(partials)
    built = [groups(*[group(key, *states) for key, states in p]) for p in partials]
    for _ in range(3):
        _, result = answer(planned, built)
        got = {tuple(map(_identity, row[:width])): row for row in result}
        assert len(got) == len(result)
        # repr: NaN keys and values compare equal.
        assert sorted(map(repr, got.items())) == sorted(map(repr, expected.items()))
        rng.shuffle(built)


@pytest.mark.parametrize("bits", [63, 6])
def test_multi_key_groups_when_value_numbers_no_longer_pack(
    bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With 6 bits, 3 per key: from the 9th value of a key on, groups are found by tuples.
    monkeypatch.setattr(numbering, "PACKED_BITS", bits)
    rng = random.Random(3)
    planned = plan("SELECT a, b, count(*), max(v) FROM ci GROUP BY a, b")
    pool: list[Cell] = [None, True, 1, 1.0, "1", *range(2, 12), *[f"s{i}" for i in range(6)]]
    partials = []
    for i in range(6):
        # The first two partials hold 6 values of each key: packed; then more.
        values = pool[:6] if i < 2 else pool
        keys = {
            (_identity(a), _identity(b)): (a, b)
            for a, b in ((rng.choice(values), rng.choice(values)) for _ in range(30))
        }
        partials.append(
            [
                (key, [count(rng.randrange(1, 9)), extreme(rng.randrange(100))])
                for key in keys.values()
            ]
        )
    expected: dict[Any, list[Cell]] = {}
    for partial in partials:
        for key, (n, high) in partial:
            row = expected.setdefault(tuple(map(_identity, key)), [*key, 0, None])
            row[2] += n.count
            row[3] = high.extreme if row[3] is None else max(row[3], high.extreme)  # type: ignore[call-overload]
    merged = merge.Merged()
    for i, partial in enumerate(partials):
        add_partial(planned, merged, groups(*[group(key, *states) for key, states in partial]))
        if i == 2:
            # A group twice: refused, and the groups it brought are forgotten.
            key, states = partial[0]
            twice = groups(group(("new", "new"), *states), group(key, *states), group(key, *states))
            with pytest.raises(PartialResultError, match="twice"):
                add_partial(planned, merged, twice)
    assert merged.index is not None
    assert merged.index.keys.packed == (bits == 63)  # the way groups were found
    _, result = finalize(planned, merged)
    got = {tuple(map(_identity, [from_value(v) for v in row.values][:2])): row for row in result}
    assert len(got) == len(result) == len(expected)
    assert sorted(map(repr, [[from_value(v) for v in row.values] for row in result])) == sorted(
        map(repr, expected.values())
    )
