"""Turning merged groups and rows into the answer: HAVING, ORDER BY, LIMIT and OFFSET, computed
and typed result columns, and the rows' wire form."""

from __future__ import annotations

import gc

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.values import BOOL, FLOAT, INT, STRING, from_value
from flakehouse.query.answer import finalize, to_response
from flakehouse.query.merge import merge_partials
from services.query.tests.merge_helpers import (
    UNSPECIFIED,
    Cell,
    answer,
    count,
    extreme,
    group,
    groups,
    plan,
    rows,
    total,
)


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


def test_rows_outlive_the_merge() -> None:
    planned = plan("SELECT k, count(*) FROM ci GROUP BY k")
    _, result = finalize(planned, merge_partials(planned, [groups(group(["a"], count(2)))]))
    gc.collect()
    assert [[from_value(v) for v in row.values] for row in result] == [["a", 2]]
    assert events_pb2.Row.FromString(result[0].SerializeToString()) == result[0]


def test_an_answer_cut_at_the_default_limit_says_so() -> None:
    def truncated(sql: str, *counts: int) -> tuple[bool, int]:
        planned = plan(sql)
        partials = [rows(*[[f"t{p}-{i}"] for i in range(n)]) for p, n in enumerate(counts)]
        response = to_response(planned, merge_partials(planned, partials))
        return response.truncated, len(response.rows)

    # Storage sends up to 1001 rows a partition under the default LIMIT of 1000.
    assert truncated("SELECT name FROM ci", 600, 401) == (True, 1000)
    assert truncated("SELECT name FROM ci", 1001) == (True, 1000)
    assert truncated("SELECT name FROM ci", 600, 400) == (False, 1000)
    assert truncated("SELECT name FROM ci OFFSET 10", 1011) == (True, 1000)
    # An explicit LIMIT is what was asked for: never flagged.
    assert truncated("SELECT name FROM ci LIMIT 5", 10) == (False, 5)
    assert truncated("SELECT name FROM ci LIMIT 1000", 1000, 1000) == (False, 1000)


def test_time_columns_are_typed_timestamp_unless_raw_times_is_asked() -> None:
    def types(sql: str, partial: plan_pb2.PartialResult, raw_times: bool = False) -> list[str]:
        planned = plan(sql)
        merged = merge_partials(planned, [partial])
        response = to_response(planned, merged, raw_times=raw_times)
        return [events_pb2.ValueType.Name(c.type) for c in response.columns]

    bucket = "SELECT time_bucket(timestamp, '1h') AS h, count(*) FROM ci GROUP BY h"
    hour = 3_600_000_000
    partial = groups(group([hour], count(2)), group([2 * hour], count(1)))
    assert types(bucket, partial) == ["VALUE_TYPE_TIMESTAMP", "VALUE_TYPE_INT"]
    assert types(bucket, partial, raw_times=True) == ["VALUE_TYPE_INT", "VALUE_TYPE_INT"]
    extremes = groups(group([], extreme(5), extreme(9), extreme(3)))
    assert types("SELECT min(timestamp), max(timestamp), max(retries) FROM ci", extremes) == [
        "VALUE_TYPE_TIMESTAMP",
        "VALUE_TYPE_TIMESTAMP",
        "VALUE_TYPE_INT",
    ]
    raw = rows([hour, "a"], [2 * hour, "b"])
    assert types("SELECT timestamp, name FROM ci", raw) == [
        "VALUE_TYPE_TIMESTAMP",
        "VALUE_TYPE_STRING",
    ]
    # Arithmetic on times is a number (a span of microseconds here).
    span = groups(group([], count(3), extreme(9), extreme(3)))
    sql = "SELECT count(*), max(timestamp) - min(timestamp) AS span FROM ci"
    assert types(sql, span) == ["VALUE_TYPE_INT", "VALUE_TYPE_INT"]
