"""The planner: each supported construct gives the exact IR, each error a clear QueryError."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import text_format

from flakehouse.common.v1 import plan_pb2
from flakehouse.query import finalexpr as fx
from flakehouse.query.sql import QueryError
from flakehouse.query.sql.planner import (
    DEFAULT_RAW_LIMIT,
    MAX_RAW_LIMIT,
    PlannedQuery,
    plan_query,
)

SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
NOW = int(datetime(2026, 11, 15, 12, tzinfo=UTC).timestamp()) * SECOND


def micros(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * SECOND


def plan(sql: str) -> PlannedQuery:
    return plan_query(sql, now_us=NOW)


def ir(text: str) -> plan_pb2.QueryPlan:
    return text_format.Parse(text, plan_pb2.QueryPlan())


def where(condition: str) -> plan_pb2.QueryPlan:
    """The plan of a raw-rows query with this WHERE, to look at its filter and time range."""
    return plan(f"SELECT name FROM ci WHERE {condition}").plan


def expr(text: str) -> plan_pb2.Expr:
    return text_format.Parse(text, plan_pb2.Expr())


def cmp(op: str, field: str, value: str) -> str:
    return f'compare {{ op: COMPARE_OP_{op} field: "{field}" value {{ {value} }} }}'


def error(sql: str) -> QueryError:
    with pytest.raises(QueryError) as caught:
        plan(sql)
    return caught.value


# -- the design's example and the overall shape --------------------------------------------


def test_design_example_without_percentile() -> None:
    planned = plan(
        "SELECT suite, count(*) AS runs, avg(duration) FROM ci"
        " WHERE status = 'failed' AND timestamp >= '2026-11-01'"
        " GROUP BY suite ORDER BY runs DESC LIMIT 20"
    )
    assert planned.plan == ir(
        f"""
        ir_version: 1 dataset: "ci"
        time_range {{ start_us: {micros(2026, 11, 1)} }}
        filter {{ {cmp("EQ", "status", 'string_value: "failed"')} }}
        group_by {{ field: "suite" }}
        aggregates {{ function: AGGREGATE_FUNCTION_COUNT }}
        aggregates {{ function: AGGREGATE_FUNCTION_AVG field: "duration" }}
        """
    )
    assert planned.is_aggregate
    assert planned.columns == ["suite", "runs", "avg(duration)"]
    assert planned.outputs == [fx.KeyRef(0), fx.AggRef(0), fx.AggRef(1)]
    assert planned.order == [fx.SortKey(fx.AggRef(0), descending=True)]
    assert planned.having is None
    assert (planned.limit, planned.offset) == (20, 0)


def test_global_aggregate_has_no_group_keys() -> None:
    planned = plan("SELECT count(*), sum(duration), min(name), max(retries) FROM nightly")
    assert planned.plan == ir(
        """
        ir_version: 1 dataset: "nightly"
        aggregates { function: AGGREGATE_FUNCTION_COUNT }
        aggregates { function: AGGREGATE_FUNCTION_SUM field: "duration" }
        aggregates { function: AGGREGATE_FUNCTION_MIN field: "name" }
        aggregates { function: AGGREGATE_FUNCTION_MAX field: "retries" }
        """
    )
    assert planned.columns == ["count(*)", "sum(duration)", "min(name)", "max(retries)"]
    assert planned.limit is None


def test_design_example_with_percentile() -> None:
    planned = plan(
        "SELECT suite, count(*) AS runs, percentile(duration, 0.95) FROM ci"
        " WHERE status = 'failed' AND timestamp >= '2026-11-01'"
        " GROUP BY suite ORDER BY runs DESC LIMIT 20"
    )
    assert planned.plan == ir(
        f"""
        ir_version: 1 dataset: "ci"
        time_range {{ start_us: {micros(2026, 11, 1)} }}
        filter {{ {cmp("EQ", "status", 'string_value: "failed"')} }}
        group_by {{ field: "suite" }}
        aggregates {{ function: AGGREGATE_FUNCTION_COUNT }}
        aggregates {{ function: AGGREGATE_FUNCTION_PERCENTILE field: "duration" quantile: 0.95 }}
        """
    )
    assert planned.columns == ["suite", "runs", "percentile(duration, 0.95)"]
    assert planned.outputs == [fx.KeyRef(0), fx.AggRef(0), fx.AggRef(1)]


def test_count_distinct_and_percentile_forms() -> None:
    planned = plan(
        "SELECT suite, count(DISTINCT name), COUNT(distinct ci.name) AS names,"
        " percentile(duration, 0.95), p95(duration) AS p, P50(retries), p99(duration),"
        " percentile(duration, 1), p90(duration) - p50(duration) AS spread"
        " FROM ci GROUP BY suite HAVING count(DISTINCT status) > 1 ORDER BY p99(duration) DESC"
    )
    F = plan_pb2.AggregateFunction
    assert list(planned.plan.aggregates) == [
        plan_pb2.Aggregate(function=F.AGGREGATE_FUNCTION_COUNT_DISTINCT, field="name"),
        plan_pb2.Aggregate(
            function=F.AGGREGATE_FUNCTION_PERCENTILE, field="duration", quantile=0.95
        ),
        plan_pb2.Aggregate(function=F.AGGREGATE_FUNCTION_PERCENTILE, field="retries", quantile=0.5),
        plan_pb2.Aggregate(
            function=F.AGGREGATE_FUNCTION_PERCENTILE, field="duration", quantile=0.99
        ),
        plan_pb2.Aggregate(function=F.AGGREGATE_FUNCTION_PERCENTILE, field="duration", quantile=1),
        plan_pb2.Aggregate(
            function=F.AGGREGATE_FUNCTION_PERCENTILE, field="duration", quantile=0.9
        ),
        plan_pb2.Aggregate(
            function=F.AGGREGATE_FUNCTION_PERCENTILE, field="duration", quantile=0.5
        ),
        plan_pb2.Aggregate(function=F.AGGREGATE_FUNCTION_COUNT_DISTINCT, field="status"),
    ]
    # Equal aggregates are computed once: p95(d) is percentile(d, 0.95).
    assert planned.outputs[:8] == [fx.KeyRef(0), *map(fx.AggRef, [0, 0, 1, 1, 2, 3, 4])]
    assert planned.outputs[8] == fx.Arith("-", fx.AggRef(5), fx.AggRef(6))
    assert planned.columns == [
        "suite",
        "count(DISTINCT name)",
        "names",
        "percentile(duration, 0.95)",
        "p",
        "p50(retries)",
        "p99(duration)",
        "percentile(duration, 1)",
        "spread",
    ]
    assert planned.having == fx.Cmp(">", fx.AggRef(7), fx.Lit(1))
    assert planned.order == [fx.SortKey(fx.AggRef(3), descending=True)]


def test_count_forms() -> None:
    planned = plan("SELECT count(*), count(1), COUNT(duration), Count(*) AS n FROM ci")
    assert list(planned.plan.aggregates) == [
        plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT),
        plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD, field="duration"),
    ]
    # count(1) is count(*): the same aggregate, computed once.
    assert planned.outputs == [fx.AggRef(0), fx.AggRef(0), fx.AggRef(1), fx.AggRef(0)]
    assert planned.columns == ["count(*)", "count(*)", "count(duration)", "n"]


def test_dataset_name_with_dash_and_digits_quoted() -> None:
    assert plan('SELECT count(*) FROM "2024-ci_x"').plan.dataset == "2024-ci_x"


# -- WHERE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("status = 'failed'", cmp("EQ", "status", 'string_value: "failed"')),
        ("status != 'failed'", cmp("NE", "status", 'string_value: "failed"')),
        ("status <> 'failed'", cmp("NE", "status", 'string_value: "failed"')),
        ("retries < 3", cmp("LT", "retries", "int_value: 3")),
        ("retries <= 3", cmp("LE", "retries", "int_value: 3")),
        ("duration > 1.5", cmp("GT", "duration", "float_value: 1.5")),
        ("duration >= -2", cmp("GE", "duration", "int_value: -2")),
        ("duration >= 1e3", cmp("GE", "duration", "float_value: 1000")),
        ("flaky = TRUE", cmp("EQ", "flaky", "bool_value: true")),
        ("flaky = false", cmp("EQ", "flaky", "bool_value: false")),
        # A literal on the left flips the operator.
        ("3 > retries", cmp("LT", "retries", "int_value: 3")),
        ("3 <= retries", cmp("GE", "retries", "int_value: 3")),
        ("'x' = name", cmp("EQ", "name", 'string_value: "x"')),
        # Field names: quoted with odd characters, unquoted dotted, qualified by the dataset.
        ("\"prop.os\" = 'linux'", cmp("EQ", "prop.os", 'string_value: "linux"')),
        ("prop.os = 'linux'", cmp("EQ", "prop.os", 'string_value: "linux"')),
        ('"a:b/c-d" = 1', cmp("EQ", "a:b/c-d", "int_value: 1")),
        ("ci.status = 'x'", cmp("EQ", "status", 'string_value: "x"')),
        ("ci.prop.os = 'x'", cmp("EQ", "prop.os", 'string_value: "x"')),
        ("flaky", cmp("EQ", "flaky", "bool_value: true")),
        ("(((retries = 1)))", cmp("EQ", "retries", "int_value: 1")),
    ],
)
def test_comparisons(condition: str, expected: str) -> None:
    assert where(condition).filter == expr(expected)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (
            "suite IN ('a', 'b', 3)",
            'in_list { field: "suite" values { string_value: "a" }'
            ' values { string_value: "b" } values { int_value: 3 } }',
        ),
        (
            "suite NOT IN ('a')",
            'in_list { field: "suite" values { string_value: "a" } negated: true }',
        ),
        ("name LIKE 'test_%'", 'like { field: "name" pattern: "test_%" }'),
        ("name NOT LIKE 'test_%'", 'like { field: "name" pattern: "test_%" negated: true }'),
        ("NOT name LIKE 'x'", 'like { field: "name" pattern: "x" negated: true }'),
        ("message IS NULL", 'is_null { field: "message" }'),
        ("message IS NOT NULL", 'is_null { field: "message" negated: true }'),
        ("NOT message IS NULL", 'is_null { field: "message" negated: true }'),
    ],
)
def test_predicates(condition: str, expected: str) -> None:
    assert where(condition).filter == expr(expected)


def test_and_or_are_flattened_junctions() -> None:
    assert where("a = 1 AND b = 2 AND (c = 3 AND d = 4)").filter == expr(
        f"""junction {{ op: JUNCTION_OP_AND
            operands {{ {cmp("EQ", "a", "int_value: 1")} }}
            operands {{ {cmp("EQ", "b", "int_value: 2")} }}
            operands {{ {cmp("EQ", "c", "int_value: 3")} }}
            operands {{ {cmp("EQ", "d", "int_value: 4")} }} }}"""
    )
    assert where("a = 1 OR b = 2 AND c = 3").filter == expr(
        f"""junction {{ op: JUNCTION_OP_OR
            operands {{ {cmp("EQ", "a", "int_value: 1")} }}
            operands {{ junction {{ op: JUNCTION_OP_AND
                operands {{ {cmp("EQ", "b", "int_value: 2")} }}
                operands {{ {cmp("EQ", "c", "int_value: 3")} }} }} }} }}"""
    )


def test_not_is_pushed_down_to_the_leaves() -> None:
    # De Morgan, complemented comparisons and negated flags: the plan holds no Not node, so
    # a row without `a` matches neither `a = 1` nor NOT (a = 1), as in SQL.
    assert where(
        "NOT (a = 1 OR b IN (2) OR c LIKE 'z%' OR d IS NULL OR (e < 5 AND NOT f >= 6))"
    ).filter == expr(
        f"""junction {{ op: JUNCTION_OP_AND
            operands {{ {cmp("NE", "a", "int_value: 1")} }}
            operands {{ in_list {{ field: "b" values {{ int_value: 2 }} negated: true }} }}
            operands {{ like {{ field: "c" pattern: "z%" negated: true }} }}
            operands {{ is_null {{ field: "d" negated: true }} }}
            operands {{ junction {{ op: JUNCTION_OP_OR
                operands {{ {cmp("GE", "e", "int_value: 5")} }}
                operands {{ {cmp("GE", "f", "int_value: 6")} }} }} }} }}"""
    )
    assert where("NOT NOT a = 1").filter == expr(cmp("EQ", "a", "int_value: 1"))
    assert where("NOT flaky").filter == expr(cmp("NE", "flaky", "bool_value: true"))
    assert where("NOT a NOT IN (1)").filter == expr(
        'in_list { field: "a" values { int_value: 1 } }'
    )


def test_between() -> None:
    assert where("retries BETWEEN 1 AND 3").filter == expr(
        f"""junction {{ op: JUNCTION_OP_AND
            operands {{ {cmp("GE", "retries", "int_value: 1")} }}
            operands {{ {cmp("LE", "retries", "int_value: 3")} }} }}"""
    )
    assert where("retries NOT BETWEEN 1 AND 3").filter == expr(
        f"""junction {{ op: JUNCTION_OP_OR
            operands {{ {cmp("LT", "retries", "int_value: 1")} }}
            operands {{ {cmp("GT", "retries", "int_value: 3")} }} }}"""
    )


# -- time range -----------------------------------------------------------------------------


def time_range(condition: str) -> tuple[int | None, int | None]:
    planned = where(condition)
    r = planned.time_range
    return (
        r.start_us if r.HasField("start_us") else None,
        r.end_us if r.HasField("end_us") else None,
    )


NOV1 = micros(2026, 11, 1)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("timestamp >= '2026-11-01'", (NOV1, None)),
        ("timestamp > '2026-11-01'", (NOV1 + 1, None)),
        ("timestamp < '2026-11-01'", (None, NOV1)),
        ("timestamp <= '2026-11-01'", (None, NOV1 + 1)),
        ("timestamp = '2026-11-01'", (NOV1, NOV1 + 1)),
        ("'2026-11-01' <= timestamp", (NOV1, None)),
        ("NOT timestamp < '2026-11-01'", (NOV1, None)),
        ("timestamp BETWEEN '2026-11-01' AND '2026-11-02'", (NOV1, NOV1 + DAY + 1)),
        ("timestamp >= '2026-11-01T10:00:00Z'", (NOV1 + 10 * HOUR, None)),
        ("timestamp >= '2026-11-01 10:00:00'", (NOV1 + 10 * HOUR, None)),
        ("timestamp >= '2026-11-01T12:00:00+02:00'", (NOV1 + 10 * HOUR, None)),
        ("timestamp >= 1700000000000000", (1_700_000_000_000_000, None)),
        ("timestamp > now() - interval '7 days'", (NOW - 7 * DAY + 1, None)),
        ("timestamp >= now() - interval 1 hour", (NOW - HOUR, None)),
        ("timestamp >= now() - interval '30 minutes'", (NOW - 1800 * SECOND, None)),
        ("timestamp < now()", (None, NOW)),
        # Several bounds intersect.
        (
            "timestamp >= '2026-11-01' AND timestamp > '2026-10-01' AND timestamp < now()"
            " AND timestamp <= '2026-11-10'",
            (NOV1, micros(2026, 11, 10) + 1),
        ),
    ],
)
def test_time_bounds_are_lifted(condition: str, expected: tuple[int | None, int | None]) -> None:
    assert time_range(condition) == expected
    assert not where(condition).HasField("filter")


def test_lifting_keeps_the_rest_of_the_filter() -> None:
    planned = where("status = 'failed' AND timestamp >= '2026-11-01' AND retries > 0")
    assert time_range("status = 'failed' AND timestamp >= '2026-11-01'") == (NOV1, None)
    assert planned.filter == expr(
        f"""junction {{ op: JUNCTION_OP_AND
            operands {{ {cmp("EQ", "status", 'string_value: "failed"')} }}
            operands {{ {cmp("GT", "retries", "int_value: 0")} }} }}"""
    )
    single = where("timestamp >= '2026-11-01' AND retries > 0")
    assert single.filter == expr(cmp("GT", "retries", "int_value: 0"))


def test_bounds_under_or_stay_in_the_filter() -> None:
    planned = where("timestamp >= '2026-11-01' OR status = 'failed'")
    assert not planned.HasField("time_range")
    assert planned.filter == expr(
        f"""junction {{ op: JUNCTION_OP_OR
            operands {{ {cmp("GE", "timestamp", f"int_value: {NOV1}")} }}
            operands {{ {cmp("EQ", "status", 'string_value: "failed"')} }} }}"""
    )
    # != is no bound either, and IN on timestamp converts each time.
    assert where("timestamp != '2026-11-01'").filter == expr(
        cmp("NE", "timestamp", f"int_value: {NOV1}")
    )
    assert where("timestamp IN ('2026-11-01', 5)").filter == expr(
        f'in_list {{ field: "timestamp" values {{ int_value: {NOV1} }} values {{ int_value: 5 }} }}'
    )


def test_a_bound_at_the_end_of_time_stays_in_the_filter() -> None:
    planned = where("timestamp <= 9223372036854775807 AND timestamp >= 5")
    assert time_range("timestamp <= 9223372036854775807 AND timestamp >= 5") == (5, None)
    assert planned.filter == expr(cmp("LE", "timestamp", "int_value: 9223372036854775807"))


def test_no_where_leaves_filter_and_time_range_unset() -> None:
    planned = plan("SELECT name FROM ci").plan
    assert not planned.HasField("filter")
    assert not planned.HasField("time_range")


# -- GROUP BY, HAVING, ORDER BY ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "micros_"),
    [
        ("'30s'", 30 * SECOND),
        ("'5m'", 300 * SECOND),
        ("'1h'", HOUR),
        ("'1d'", DAY),
        ("'7d'", 7 * DAY),
        ("'1 hour'", HOUR),
        ("interval '1 hour'", HOUR),
        ("interval 15 minute", 900 * SECOND),
    ],
)
def test_time_bucket_widths(width: str, micros_: int) -> None:
    planned = plan(f"SELECT time_bucket(timestamp, {width}), count(*) FROM ci GROUP BY 1")
    assert list(planned.plan.group_by) == [plan_pb2.GroupKey(time_bucket_us=micros_)]
    assert planned.outputs == [fx.KeyRef(0), fx.AggRef(0)]


def test_time_bucket_name_and_matching_spellings() -> None:
    planned = plan(
        "SELECT TIME_BUCKET(timestamp, '1h'), count(*) FROM ci"
        " GROUP BY time_bucket(timestamp, '60 minutes')"
    )
    assert planned.columns == ["time_bucket(timestamp, '1h')", "count(*)"]
    assert planned.outputs == [fx.KeyRef(0), fx.AggRef(0)]
    # DuckDB's argument order works too.
    swapped = plan("SELECT time_bucket(interval '1 day', timestamp) AS d FROM ci GROUP BY d")
    assert list(swapped.plan.group_by) == [plan_pb2.GroupKey(time_bucket_us=DAY)]


def test_group_by_fields_aliases_and_positions() -> None:
    planned = plan(
        "SELECT suite AS s, time_bucket(timestamp, '1d') AS day, status, count(*) FROM ci"
        " GROUP BY s, 2, status, suite"
    )
    assert list(planned.plan.group_by) == [
        plan_pb2.GroupKey(field="suite"),
        plan_pb2.GroupKey(time_bucket_us=DAY),
        plan_pb2.GroupKey(field="status"),
    ]
    assert planned.outputs == [fx.KeyRef(0), fx.KeyRef(1), fx.KeyRef(2), fx.AggRef(0)]
    assert planned.columns == ["s", "day", "status", "count(*)"]


def test_group_keys_need_not_be_selected() -> None:
    planned = plan("SELECT count(*) FROM ci GROUP BY suite, status")
    assert [k.field for k in planned.plan.group_by] == ["suite", "status"]
    assert planned.outputs == [fx.AggRef(0)]


def test_group_by_without_aggregates_adds_a_hidden_count() -> None:
    planned = plan("SELECT suite FROM ci GROUP BY suite")
    assert planned.is_aggregate
    assert list(planned.plan.aggregates) == [
        plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)
    ]
    assert not planned.plan.select_fields
    assert planned.plan.limit == 0
    assert planned.outputs == [fx.KeyRef(0)]
    assert planned.columns == ["suite"]


def test_having_and_order_by_add_hidden_aggregates() -> None:
    planned = plan(
        "SELECT suite, count(*) AS runs FROM ci GROUP BY suite"
        " HAVING max(duration) > 2 AND runs >= 10 ORDER BY avg(duration) DESC, suite"
    )
    assert [a.function for a in planned.plan.aggregates] == [
        plan_pb2.AGGREGATE_FUNCTION_COUNT,
        plan_pb2.AGGREGATE_FUNCTION_MAX,
        plan_pb2.AGGREGATE_FUNCTION_AVG,
    ]
    assert planned.outputs == [fx.KeyRef(0), fx.AggRef(0)]
    assert planned.columns == ["suite", "runs"]
    assert planned.having == fx.BoolOp(
        "and",
        (
            fx.Cmp(">", fx.AggRef(1), fx.Lit(2)),
            fx.Cmp(">=", fx.AggRef(0), fx.Lit(10)),
        ),
    )
    assert planned.order == [
        fx.SortKey(fx.AggRef(2), descending=True),
        fx.SortKey(fx.KeyRef(0), descending=False),
    ]


def test_order_by_position_and_alias() -> None:
    planned = plan(
        "SELECT suite, count(*) AS runs FROM ci GROUP BY suite ORDER BY 2 DESC, runs ASC, 1"
    )
    assert planned.order == [
        fx.SortKey(fx.AggRef(0), True),
        fx.SortKey(fx.AggRef(0), False),
        fx.SortKey(fx.KeyRef(0), False),
    ]


def test_expressions_over_aggregates() -> None:
    planned = plan(
        "SELECT suite, sum(duration) / count(*) AS mean, -min(retries), count(*) * 2 + 1"
        " FROM ci GROUP BY suite HAVING (sum(duration) / count(*)) > 0.5"
        " AND suite IN ('a', 'b') AND suite NOT LIKE 'x%' AND NOT suite IS NULL"
    )
    sum_, count, min_ = fx.AggRef(0), fx.AggRef(1), fx.AggRef(2)
    assert planned.outputs == [
        fx.KeyRef(0),
        fx.Arith("/", sum_, count),
        fx.Negate(min_),
        fx.Arith("+", fx.Arith("*", count, fx.Lit(2)), fx.Lit(1)),
    ]
    assert planned.columns == ["suite", "mean", "-min(retries)", "count(*) * 2 + 1"]
    assert planned.having == fx.BoolOp(
        "and",
        (
            fx.BoolOp(
                "and",
                (
                    fx.BoolOp(
                        "and",
                        (
                            fx.Cmp(">", fx.Arith("/", sum_, count), fx.Lit(0.5)),
                            fx.InOp(fx.KeyRef(0), ("a", "b")),
                        ),
                    ),
                    fx.LikeOp(fx.KeyRef(0), "x%", negated=True),
                ),
            ),
            fx.NotOp(fx.IsNullOp(fx.KeyRef(0))),
        ),
    )


def test_limit_and_offset_of_aggregate_queries_stay_in_the_query_service() -> None:
    planned = plan("SELECT suite, count(*) FROM ci GROUP BY suite LIMIT 5 OFFSET 10")
    assert (planned.limit, planned.offset) == (5, 10)
    assert planned.plan.limit == 0


def test_aggregate_over_timestamp() -> None:
    planned = plan("SELECT max(timestamp) AS last_seen FROM ci HAVING max(timestamp) > 0")
    assert list(planned.plan.aggregates) == [
        plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_MAX, field="timestamp")
    ]


# -- raw rows ---------------------------------------------------------------------------------


def test_raw_rows_default_limit() -> None:
    planned = plan("SELECT timestamp, name, \"prop.os\" AS os FROM ci WHERE status = 'failed'")
    assert planned.plan == ir(
        f"""
        ir_version: 1 dataset: "ci"
        filter {{ {cmp("EQ", "status", 'string_value: "failed"')} }}
        select_fields: "timestamp" select_fields: "name" select_fields: "prop.os"
        limit: {DEFAULT_RAW_LIMIT}
        """
    )
    assert not planned.is_aggregate
    assert planned.columns == ["timestamp", "name", "os"]
    assert planned.outputs == [fx.FieldRef(0), fx.FieldRef(1), fx.FieldRef(2)]
    assert (planned.limit, planned.offset) == (DEFAULT_RAW_LIMIT, 0)


def test_raw_rows_order_by_hidden_fields_alias_and_position() -> None:
    planned = plan(
        "SELECT name, duration AS d FROM ci ORDER BY timestamp DESC, d, 1 DESC, retries"
        " LIMIT 10 OFFSET 5"
    )
    assert planned.plan == ir(
        """
        ir_version: 1 dataset: "ci"
        select_fields: "name" select_fields: "duration"
        select_fields: "timestamp" select_fields: "retries"
        order_by { field: "timestamp" descending: true }
        order_by { field: "duration" }
        order_by { field: "name" descending: true }
        order_by { field: "retries" }
        limit: 15
        """
    )
    # Hidden fields are fetched for sorting but not output.
    assert planned.outputs == [fx.FieldRef(0), fx.FieldRef(1)]
    assert planned.columns == ["name", "d"]
    assert planned.order == [
        fx.SortKey(fx.FieldRef(2), True),
        fx.SortKey(fx.FieldRef(1), False),
        fx.SortKey(fx.FieldRef(0), True),
        fx.SortKey(fx.FieldRef(3), False),
    ]
    assert (planned.limit, planned.offset) == (10, 5)


def test_raw_rows_limit_bounds() -> None:
    assert plan(f"SELECT name FROM ci LIMIT {MAX_RAW_LIMIT}").plan.limit == MAX_RAW_LIMIT
    # LIMIT 0 must not read as "no limit" on the storage side.
    zero = plan("SELECT name FROM ci LIMIT 0")
    assert (zero.limit, zero.plan.limit) == (0, 1)
    sql = f"SELECT name FROM ci LIMIT {MAX_RAW_LIMIT} OFFSET 1"
    caught = error(sql)
    assert f"at most {MAX_RAW_LIMIT}" in caught.message
    assert caught.position == sql.index(str(MAX_RAW_LIMIT))


def test_same_field_twice_is_fetched_once() -> None:
    planned = plan("SELECT name, name AS again FROM ci ORDER BY name")
    assert list(planned.plan.select_fields) == ["name"]
    assert planned.outputs == [fx.FieldRef(0), fx.FieldRef(0)]


# -- errors -----------------------------------------------------------------------------------


def at(sql: str, token: str) -> int:
    """Offset of `token` in `sql`; "context|token" is the token after that context."""
    context, _, token = token.rpartition("|")
    return sql.index(token, sql.index(context) + len(context))


@pytest.mark.parametrize(
    ("sql", "message", "token"),
    [
        # syntax
        ("SELECT name FROM ci WHERE", "syntax error near 'WHERE': incomplete WHERE", "WHERE"),
        ("SELEC name FROM ci", "syntax error near 'FROM'", "FROM"),
        ("SELECT name FROM ci WHERE (a = 1", "Expecting )", "1"),
        # functions and arity
        ("SELECT foo(x) FROM ci GROUP BY x", "unknown function foo()", "foo"),
        ("SELECT foo(x) FROM ci", "unknown function foo()", "foo"),
        ("SELECT length(name), count(*) FROM ci", "function length() is not supported", "length"),
        ("SELECT min(a, b) FROM ci", "min() takes one field, got 2", "min"),
        ("SELECT count(a, b) FROM ci", "count() takes one argument", "count"),
        ("SELECT count() FROM ci", "count() needs an argument", "count"),
        ("SELECT sum(*) FROM ci", "sum(*) is not valid; name a field", "*"),
        ("SELECT avg(DISTINCT x) FROM ci", "DISTINCT is only supported in count()", "x"),
        ("SELECT sum(count(*)) FROM ci", "the argument of sum() must be a field", "count"),
        ("SELECT median(x) FROM ci", "aggregate function median() is not supported", "median"),
        ("SELECT percentile(x) FROM ci", "percentile() takes a field and a quantile", "percentile"),
        ("SELECT percentile(x, 95) FROM ci", "the quantile must be a number in (0, 1]", "95"),
        ("SELECT p95(x, 1) FROM ci", "p95() takes one field, got 2", "p95"),
        ("SELECT percentile(x, 0) FROM ci", "the quantile must be a number in (0, 1]", "0"),
        ("SELECT percentile(x, 1.5) FROM ci", "the quantile must be a number in (0, 1]", "1.5"),
        ("SELECT percentile(x, -0.5) FROM ci", "the quantile must be a number in (0, 1]", "-|0.5"),
        ("SELECT percentile(x, '0.5') FROM ci", "the quantile must be a number in (0, 1]", "'"),
        ("SELECT percentile(x, y) FROM ci", "the quantile must be a number in (0, 1]", "y"),
        ("SELECT percentile(0.5, x) FROM ci", "argument of percentile() must be a field", "0.5"),
        ("SELECT p50(DISTINCT x) FROM ci", "DISTINCT is only supported in count()", "x"),
        ("SELECT count(DISTINCT a, b) FROM ci", "count(DISTINCT …) takes one field", "count"),
        ("SELECT count(DISTINCT *) FROM ci", "count(DISTINCT *) is not valid; name a field", "*"),
        # aggregates in the wrong place, grouping
        (
            "SELECT name FROM ci WHERE count(*) > 1",
            "count() is not allowed in WHERE; use HAVING",
            "count",
        ),
        (
            "SELECT count(*) FROM ci GROUP BY count(*)",
            "count() is not allowed in GROUP BY",
            "BY |count",
        ),
        (
            "SELECT suite, count(*) AS n FROM ci GROUP BY suite, n",
            "count() is not allowed in GROUP BY",
            "BY suite, |n",
        ),
        ("SELECT suite, count(*) FROM ci GROUP BY 2", "count() is not allowed in GROUP BY", "2"),
        (
            "SELECT suite, count(*) FROM ci",
            "field suite must appear in GROUP BY or be used in an aggregate function",
            "suite",
        ),
        (
            "SELECT suite, status, count(*) FROM ci GROUP BY suite",
            "field status must appear in GROUP BY",
            "status",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite ORDER BY status",
            "field status must appear in GROUP BY",
            "status",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING status = 'x'",
            "field status must appear in GROUP BY",
            "status",
        ),
        (
            "SELECT time_bucket(timestamp, '1h'), count(*) FROM ci"
            " GROUP BY time_bucket(timestamp, '1d')",
            "time_bucket(timestamp, '1h') must appear in GROUP BY",
            "time_bucket",
        ),
        ("SELECT suite FROM ci GROUP BY suite + 1", "cannot GROUP BY suite + 1", "suite + 1"),
        (
            "SELECT suite FROM ci GROUP BY 3",
            "GROUP BY position 3 is not in the select list (1 to 1)",
            "3",
        ),
        (
            "SELECT suite FROM ci GROUP BY ROLLUP (suite)",
            "GROUP BY ROLLUP is not supported",
            "ROLLUP (|suite",
        ),
        # time_bucket
        (
            "SELECT time_bucket(timestamp, '1 fortnight') AS t FROM ci GROUP BY t",
            "bad time_bucket width: unknown time unit 'fortnight'",
            "'1 fortnight'",
        ),
        (
            "SELECT time_bucket(timestamp, '0s') AS t FROM ci GROUP BY t",
            "time_bucket width must be positive",
            "'0s'",
        ),
        (
            "SELECT time_bucket(timestamp, '1 month') AS t FROM ci GROUP BY t",
            "months and years have no fixed length",
            "'1 month'",
        ),
        (
            "SELECT time_bucket(duration, '1h') AS t FROM ci GROUP BY t",
            "time_bucket() buckets timestamp, not duration",
            "duration",
        ),
        (
            "SELECT time_bucket(timestamp) AS t FROM ci GROUP BY t",
            "time_bucket() takes two arguments, got 1",
            "time_bucket",
        ),
        (
            "SELECT time_bucket(timestamp, 3600) AS t FROM ci GROUP BY t",
            "bad time_bucket width 3600",
            "3600",
        ),
        (
            "SELECT time_bucket(timestamp, '1h') FROM ci",
            "time_bucket() needs GROUP BY",
            "time_bucket",
        ),
        # intervals and times
        (
            "SELECT name FROM ci WHERE timestamp > now() - interval '3 months'",
            "bad interval: months and years",
            "now",
        ),
        (
            "SELECT name FROM ci WHERE timestamp > 'last week'",
            "not a date or time: 'last week'",
            "'last week'",
        ),
        (
            "SELECT name FROM ci WHERE timestamp > TRUE",
            "type mismatch: timestamp is a time, not a bool",
            "WHERE |timestamp",
        ),
        (
            "SELECT name FROM ci WHERE timestamp LIKE '2026%'",
            "LIKE works on strings, and timestamp is a time",
            "timestamp",
        ),
        ("SELECT name FROM ci WHERE started > now()", "expected a literal value", "now"),
        # types and values
        (
            "SELECT name FROM ci WHERE duration LIKE 5",
            "type mismatch: LIKE needs a string pattern, got 5",
            "5",
        ),
        (
            "SELECT name FROM ci WHERE name = NULL",
            "a comparison with NULL is never true; use IS NULL",
            "WHERE |name",
        ),
        (
            "SELECT name FROM ci WHERE name IN ('a', NULL)",
            "a comparison with NULL is never true",
            "WHERE |name",
        ),
        ("SELECT name FROM ci WHERE a = b", "comparing two fields is not supported", "WHERE |a"),
        ("SELECT name FROM ci WHERE 1 = 1", "a condition needs a field", "1"),
        ("SELECT name FROM ci WHERE TRUE", "a condition needs a field", None),
        (
            "SELECT name FROM ci WHERE flaky IS TRUE",
            "only IS NULL and IS NOT NULL are supported",
            "flaky",
        ),
        ("SELECT name FROM ci WHERE name ILIKE 'a'", "ILIKE is not supported", "WHERE |name"),
        (
            "SELECT name FROM ci WHERE name LIKE 'a!%' ESCAPE '!'",
            "ESCAPE is not supported",
            "WHERE |name",
        ),
        (
            "SELECT name FROM ci WHERE retries = 99999999999999999999",
            "does not fit in 64 bits",
            "9999",
        ),
        (
            "SELECT name FROM ci WHERE length(name) > 3",
            "function length() is not supported in WHERE",
            "length",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING count(*) > 'many'",
            "type mismatch in count(*) > 'many'",
            "count",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING p95(d) > 'slow'",
            "type mismatch in p95(d) > 'slow': cannot compare a number with a string",
            "p95",
        ),
        (
            "SELECT count(DISTINCT x) LIKE 'a%' FROM ci",
            "type mismatch: LIKE works on strings, count(DISTINCT x) is a number",
            "count",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING count(*) LIKE 'x%'",
            "type mismatch: LIKE works on strings, count(*) is a number",
            "count",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING count(*) = NULL",
            "a comparison with NULL is never true",
            "count",
        ),
        (
            "SELECT suite, count(*) + 'a' FROM ci GROUP BY suite",
            "type mismatch: arithmetic needs numbers, 'a' is a string",
            "'a'",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING count(*)",
            "HAVING needs a condition",
            "count",
        ),
        # query shape
        ("SELECT * FROM ci", "SELECT * is not supported; list the fields", "*"),
        (
            "SELECT DISTINCT suite FROM ci",
            "SELECT DISTINCT is not supported; use GROUP BY",
            "suite",
        ),
        ("SELECT name FROM ci JOIN other ON a = b", "joins are not supported", "other"),
        ("SELECT name FROM ci, other", "joins are not supported", "other"),
        ("SELECT name FROM (SELECT name FROM ci)", "subqueries are not supported", "(SELECT |name"),
        (
            "SELECT name FROM ci WHERE name IN (SELECT name FROM ci)",
            "subqueries are not supported",
            "(SELECT |name",
        ),
        ("WITH q AS (SELECT 1) SELECT name FROM q", "subqueries are not supported", "(SELECT |1"),
        (
            "SELECT name FROM ci UNION SELECT name FROM ci",
            "UNION, INTERSECT and EXCEPT are not supported",
            "name",
        ),
        ("SELECT count(*) OVER () FROM ci", "window functions (OVER) are not supported", "count"),
        ("SELECT name FROM ci; SELECT name FROM ci", "one statement per query", "; SELECT |name"),
        ("SELECT name", "a query needs FROM <dataset>", None),
        ("SELECT name FROM CI", "invalid dataset name 'CI'", "CI"),
        ("SELECT name FROM db.ci", "only a plain dataset name is supported", "db"),
        ('SELECT "1abc" FROM ci', "invalid field name '1abc'", '"1abc"'),
        ('SELECT "a b" FROM ci', "invalid field name 'a b'", '"a b"'),
        (
            "SELECT name, 1 FROM ci",
            "1 is not a field: without aggregates a query returns fields",
            "1",
        ),
        (
            "SELECT name FROM ci ORDER BY length(name)",
            "without aggregates, order by fields",
            "length",
        ),
        (
            "SELECT name FROM ci ORDER BY name NULLS FIRST",
            "NULLS FIRST is not supported",
            "name NULLS",
        ),
        ("SELECT name FROM ci ORDER BY 2", "ORDER BY position 2 is not in the select list", "2"),
        (
            "SELECT suite FROM ci GROUP BY suite ORDER BY 'x'",
            "order by a column, alias or position",
            "'x'",
        ),
        ("SELECT name FROM ci LIMIT 'x'", "LIMIT takes a non-negative integer, got 'x'", "'x'"),
        ("SELECT name FROM ci LIMIT -1", "LIMIT takes a non-negative integer, got -1", "1"),
        ("SELECT name FROM ci FETCH FIRST 5 ROWS ONLY", "FETCH is not supported; use LIMIT n", "5"),
        ("INSERT INTO ci VALUES (1)", "only SELECT queries are supported, not INSERT", "ci"),
    ],
)
def test_errors(sql: str, message: str, token: str | None) -> None:
    caught = error(sql)
    assert message in caught.message
    if token is None:
        assert caught.position is None
    else:
        assert caught.position == at(sql, token), (caught.position, sql)


@pytest.mark.parametrize("sql", ["", "   ", ";"])
def test_empty_query(sql: str) -> None:
    assert "empty query" in error(sql).message


def test_unclosed_quote() -> None:
    assert (
        "cannot read the SQL (an unclosed quote?)"
        in error("SELECT name FROM ci WHERE a = 'x").message
    )


def test_syntax_error_position_on_a_later_line() -> None:
    sql = "SELECT name\nFROM ci\nWHERE a = 1 AND AND b = 2"
    caught = error(sql)
    assert caught.position == sql.index("AND b")
    assert caught.line_column(sql) == (3, 17)
    assert caught.describe(sql).endswith("(line 3, column 17)")


def test_semantic_error_line_and_column() -> None:
    sql = "SELECT suite,\n       count(*),\n       status\nFROM ci GROUP BY suite"
    caught = error(sql)
    assert caught.line_column(sql) == (3, 8)
    assert str(caught) == f"{caught.message} (at character {sql.index('status')})"
