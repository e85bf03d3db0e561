"""The planner on aggregate queries: aggregates, GROUP BY (time buckets too), HAVING and
ORDER BY give the exact IR and final expressions."""

from __future__ import annotations

import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.query import finalexpr
from services.query.tests.planner_helpers import DAY, HOUR, SECOND, cmp, error, ir, micros, plan

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
    assert planned.outputs == [finalexpr.KeyRef(0), finalexpr.AggRef(0), finalexpr.AggRef(1)]
    assert planned.order == [finalexpr.SortKey(finalexpr.AggRef(0), descending=True)]
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
    assert planned.outputs == [finalexpr.KeyRef(0), finalexpr.AggRef(0), finalexpr.AggRef(1)]


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
    assert planned.outputs[:8] == [
        finalexpr.KeyRef(0),
        *map(finalexpr.AggRef, [0, 0, 1, 1, 2, 3, 4]),
    ]
    assert planned.outputs[8] == finalexpr.Arith("-", finalexpr.AggRef(5), finalexpr.AggRef(6))
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
    assert planned.having == finalexpr.Cmp(">", finalexpr.AggRef(7), finalexpr.Lit(1))
    assert planned.order == [finalexpr.SortKey(finalexpr.AggRef(3), descending=True)]


def test_count_forms() -> None:
    planned = plan("SELECT count(*), count(1), COUNT(duration), Count(*) AS n FROM ci")
    assert list(planned.plan.aggregates) == [
        plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT),
        plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD, field="duration"),
    ]
    # count(1) is count(*): the same aggregate, computed once.
    assert planned.outputs == [
        finalexpr.AggRef(0),
        finalexpr.AggRef(0),
        finalexpr.AggRef(1),
        finalexpr.AggRef(0),
    ]
    assert planned.columns == ["count(*)", "count(*)", "count(duration)", "n"]


def test_dataset_name_with_dash_and_digits_quoted() -> None:
    assert plan('SELECT count(*) FROM "2024-ci_x"').plan.dataset == "2024-ci_x"


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
    assert planned.outputs == [finalexpr.KeyRef(0), finalexpr.AggRef(0)]


def test_time_bucket_name_and_matching_spellings() -> None:
    planned = plan(
        "SELECT TIME_BUCKET(timestamp, '1h'), count(*) FROM ci"
        " GROUP BY time_bucket(timestamp, '60 minutes')"
    )
    assert planned.columns == ["time_bucket(timestamp, '1h')", "count(*)"]
    assert planned.outputs == [finalexpr.KeyRef(0), finalexpr.AggRef(0)]
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
    assert planned.outputs == [
        finalexpr.KeyRef(0),
        finalexpr.KeyRef(1),
        finalexpr.KeyRef(2),
        finalexpr.AggRef(0),
    ]
    assert planned.columns == ["s", "day", "status", "count(*)"]


def test_group_keys_need_not_be_selected() -> None:
    planned = plan("SELECT count(*) FROM ci GROUP BY suite, status")
    assert [k.field for k in planned.plan.group_by] == ["suite", "status"]
    assert planned.outputs == [finalexpr.AggRef(0)]


def test_group_by_without_aggregates_adds_a_hidden_count() -> None:
    planned = plan("SELECT suite FROM ci GROUP BY suite")
    assert planned.is_aggregate
    assert list(planned.plan.aggregates) == [
        plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)
    ]
    assert not planned.plan.select_fields
    assert planned.plan.limit == 0
    assert planned.outputs == [finalexpr.KeyRef(0)]
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
    assert planned.outputs == [finalexpr.KeyRef(0), finalexpr.AggRef(0)]
    assert planned.columns == ["suite", "runs"]
    assert planned.having == finalexpr.BoolOp(
        "and",
        (
            finalexpr.Cmp(">", finalexpr.AggRef(1), finalexpr.Lit(2)),
            finalexpr.Cmp(">=", finalexpr.AggRef(0), finalexpr.Lit(10)),
        ),
    )
    assert planned.order == [
        finalexpr.SortKey(finalexpr.AggRef(2), descending=True),
        finalexpr.SortKey(finalexpr.KeyRef(0), descending=False),
    ]


def test_order_by_position_and_alias() -> None:
    planned = plan(
        "SELECT suite, count(*) AS runs FROM ci GROUP BY suite ORDER BY 2 DESC, runs ASC, 1"
    )
    assert planned.order == [
        finalexpr.SortKey(finalexpr.AggRef(0), True),
        finalexpr.SortKey(finalexpr.AggRef(0), False),
        finalexpr.SortKey(finalexpr.KeyRef(0), False),
    ]


def test_expressions_over_aggregates() -> None:
    planned = plan(
        "SELECT suite, sum(duration) / count(*) AS mean, -min(retries), count(*) * 2 + 1"
        " FROM ci GROUP BY suite HAVING (sum(duration) / count(*)) > 0.5"
        " AND suite IN ('a', 'b') AND suite NOT LIKE 'x%' AND NOT suite IS NULL"
    )
    sum_, count, min_ = finalexpr.AggRef(0), finalexpr.AggRef(1), finalexpr.AggRef(2)
    assert planned.outputs == [
        finalexpr.KeyRef(0),
        finalexpr.Arith("/", sum_, count),
        finalexpr.Negate(min_),
        finalexpr.Arith("+", finalexpr.Arith("*", count, finalexpr.Lit(2)), finalexpr.Lit(1)),
    ]
    assert planned.columns == ["suite", "mean", "-min(retries)", "count(*) * 2 + 1"]
    assert planned.having == finalexpr.BoolOp(
        "and",
        (
            finalexpr.BoolOp(
                "and",
                (
                    finalexpr.BoolOp(
                        "and",
                        (
                            finalexpr.Cmp(
                                ">", finalexpr.Arith("/", sum_, count), finalexpr.Lit(0.5)
                            ),
                            finalexpr.InOp(finalexpr.KeyRef(0), ("a", "b")),
                        ),
                    ),
                    finalexpr.LikeOp(finalexpr.KeyRef(0), "x%", negated=True),
                ),
            ),
            finalexpr.NotOp(finalexpr.IsNullOp(finalexpr.KeyRef(0))),
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


def test_other_engines_spellings_of_percentiles_and_count_distinct() -> None:
    planned = plan(
        "SELECT median(duration), quantile_cont(duration, 0.9), approx_quantile(duration, 0.95),"
        " quantile(duration, 0.25), approx_count_distinct(name), p95(duration) FROM ci"
    )
    assert planned.columns == [
        "median(duration)",
        "quantile_cont(duration, 0.9)",
        "approx_quantile(duration, 0.95)",
        "quantile(duration, 0.25)",
        "approx_count_distinct(name)",
        "p95(duration)",
    ]
    percentile, distinct = (
        plan_pb2.AGGREGATE_FUNCTION_PERCENTILE,
        plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT,
    )
    assert [(a.function, a.field, a.quantile) for a in planned.plan.aggregates] == [
        (percentile, "duration", 0.5),
        (percentile, "duration", 0.9),
        (percentile, "duration", 0.95),
        (percentile, "duration", 0.25),
        (distinct, "name", 0.0),
    ]  # p95 is the same aggregate as approx_quantile(duration, 0.95): computed once


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT quantile_cont(duration) FROM ci", "quantile_cont() takes a field and a quantile"),
        (
            "SELECT approx_quantile(duration, 1.5) FROM ci",
            "the quantile must be a number in (0, 1]",
        ),
        ("SELECT median(*) FROM ci", "median(*) is not valid; name a field"),
        ("SELECT covar_pop(duration, retries) FROM ci", "also spelled median, quantile_cont"),
    ],
)
def test_the_spellings_are_checked_like_the_originals(sql: str, message: str) -> None:
    assert message in error(sql).message
