"""The planner on conditional aggregates (`agg(…) FILTER (WHERE …)`, count_if) and stddev: the
exact IR, the column names, which aggregates are shared, and the errors."""

from __future__ import annotations

import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.query import finalexpr
from flakehouse.query.sql import parse_statement
from services.query.tests.planner_helpers import (
    DAY,
    NOW,
    cmp,
    error,
    expr,
    ir,
    micros,
    plan,
)

FAILED = cmp("EQ", "status", 'string_value: "failed"')


def test_failure_rate_is_one_plan_with_two_aggregates() -> None:
    planned = plan(
        "SELECT name, count(*) FILTER (WHERE status = 'failed') * 1.0 / count(*) AS failure_rate"
        " FROM ci GROUP BY name ORDER BY failure_rate DESC"
    )
    assert planned.plan == ir(
        f"""
        ir_version: 2 dataset: "ci"
        group_by {{ field: "name" }}
        aggregates {{ function: AGGREGATE_FUNCTION_COUNT filter {{ {FAILED} }} }}
        aggregates {{ function: AGGREGATE_FUNCTION_COUNT }}
        """
    )
    rate = finalexpr.Arith(
        "/",
        finalexpr.Arith("*", finalexpr.AggRef(0), finalexpr.Lit(1.0)),
        finalexpr.AggRef(1),
    )
    assert planned.outputs == [finalexpr.KeyRef(0), rate]
    assert planned.order == [finalexpr.SortKey(rate, descending=True)]
    assert planned.columns == ["name", "failure_rate"]


@pytest.mark.parametrize(
    ("call", "aggregate", "column"),
    [
        ("count(*)", "function: AGGREGATE_FUNCTION_COUNT", "count(*)"),
        ("count(1)", "function: AGGREGATE_FUNCTION_COUNT", "count(*)"),
        (
            "count(duration)",
            'function: AGGREGATE_FUNCTION_COUNT_FIELD field: "duration"',
            "count(duration)",
        ),
        (
            "count(DISTINCT name)",
            'function: AGGREGATE_FUNCTION_COUNT_DISTINCT field: "name"',
            "count(DISTINCT name)",
        ),
        (
            "approx_count_distinct(name)",
            'function: AGGREGATE_FUNCTION_COUNT_DISTINCT field: "name"',
            "approx_count_distinct(name)",
        ),
        ("sum(duration)", 'function: AGGREGATE_FUNCTION_SUM field: "duration"', "sum(duration)"),
        ("avg(duration)", 'function: AGGREGATE_FUNCTION_AVG field: "duration"', "avg(duration)"),
        ("min(name)", 'function: AGGREGATE_FUNCTION_MIN field: "name"', "min(name)"),
        ("max(timestamp)", 'function: AGGREGATE_FUNCTION_MAX field: "timestamp"', "max(timestamp)"),
        (
            "p95(duration)",
            'function: AGGREGATE_FUNCTION_PERCENTILE field: "duration" quantile: 0.95',
            "p95(duration)",
        ),
        (
            "percentile(duration, 0.9)",
            'function: AGGREGATE_FUNCTION_PERCENTILE field: "duration" quantile: 0.9',
            "percentile(duration, 0.9)",
        ),
        (
            "quantile_cont(duration, 0.25)",
            'function: AGGREGATE_FUNCTION_PERCENTILE field: "duration" quantile: 0.25',
            "quantile_cont(duration, 0.25)",
        ),
        (
            "median(duration)",
            'function: AGGREGATE_FUNCTION_PERCENTILE field: "duration" quantile: 0.5',
            "median(duration)",
        ),
        (
            "stddev(duration)",
            'function: AGGREGATE_FUNCTION_STDDEV_SAMP field: "duration"',
            "stddev(duration)",
        ),
        (
            "stddev_samp(duration)",
            'function: AGGREGATE_FUNCTION_STDDEV_SAMP field: "duration"',
            "stddev_samp(duration)",
        ),
        (
            "stddev_pop(duration)",
            'function: AGGREGATE_FUNCTION_STDDEV_POP field: "duration"',
            "stddev_pop(duration)",
        ),
    ],
)
def test_every_aggregate_takes_a_filter(call: str, aggregate: str, column: str) -> None:
    planned = plan(f"SELECT suite, {call} FILTER (WHERE status = 'failed') FROM ci GROUP BY suite")
    assert list(planned.plan.aggregates) == [
        ir(f"aggregates {{ {aggregate} filter {{ {FAILED} }} }}").aggregates[0]
    ]
    assert planned.columns == ["suite", f"{column} FILTER (WHERE status = 'failed')"]
    # DuckDB's FILTER (cond) without WHERE means the same.
    short = plan(f"SELECT suite, {call} FILTER (status = 'failed') FROM ci GROUP BY suite")
    assert short.plan == planned.plan


@pytest.mark.parametrize(
    "spelling",
    [
        "count_if(status = 'failed')",
        "COUNT_IF(status = 'failed')",
        "countif(status = 'failed')",
        "countIf(status = 'failed')",  # ClickHouse's
        "count(*) FILTER (WHERE status = 'failed')",
        "count(1) FILTER (WHERE (status = 'failed'))",
    ],
)
def test_count_if_is_count_star_with_a_filter(spelling: str) -> None:
    planned = plan(
        f"SELECT {spelling}, count(*) FILTER (WHERE status = 'failed') AS n, count(*) FROM ci"
    )
    assert planned.plan == ir(
        f"""
        ir_version: 2 dataset: "ci"
        aggregates {{ function: AGGREGATE_FUNCTION_COUNT filter {{ {FAILED} }} }}
        aggregates {{ function: AGGREGATE_FUNCTION_COUNT }}
        """
    )
    assert planned.outputs == [finalexpr.AggRef(0), finalexpr.AggRef(0), finalexpr.AggRef(1)]


def test_column_names_are_as_written() -> None:
    planned = plan(
        "SELECT count_if(flaky), countIf(retries > 0), p95(duration) FILTER (WHERE suite IN"
        " ('a', 'b')), count_if(status = 'failed') FILTER (WHERE NOT flaky) FROM ci"
    )
    assert planned.columns == [
        "count_if(flaky)",
        "count_if(retries > 0)",
        "p95(duration) FILTER (WHERE suite IN ('a', 'b'))",
        "count_if(status = 'failed') FILTER (WHERE NOT flaky)",
    ]


def test_another_condition_is_another_aggregate() -> None:
    planned = plan(
        "SELECT suite, sum(duration) FILTER (WHERE status = 'failed'),"
        " sum(duration) FILTER (WHERE status = 'passed'), sum(duration),"
        " sum(duration) FILTER (WHERE status = 'failed') AS again,"
        " avg(duration) FILTER (WHERE status = 'failed')"
        " FROM ci GROUP BY suite"
    )
    passed = cmp("EQ", "status", 'string_value: "passed"')
    sum_, avg = 'function: AGGREGATE_FUNCTION_SUM field: "duration"', "AGGREGATE_FUNCTION_AVG"
    assert list(planned.plan.aggregates) == list(
        ir(
            f"""
            aggregates {{ {sum_} filter {{ {FAILED} }} }}
            aggregates {{ {sum_} filter {{ {passed} }} }}
            aggregates {{ {sum_} }}
            aggregates {{ function: {avg} field: "duration" filter {{ {FAILED} }} }}
            """
        ).aggregates
    )
    assert planned.outputs[1:] == [finalexpr.AggRef(i) for i in (0, 1, 2, 0, 3)]


def test_a_condition_on_timestamp_stays_in_the_aggregate() -> None:
    # The WHERE bound narrows the plan's time range; the FILTER bound, the aggregate's rows.
    planned = plan(
        "SELECT count(*) FILTER (WHERE timestamp >= now() - interval '1 day'), count(*)"
        " FROM ci WHERE timestamp >= now() - interval '7 days'"
    )
    assert planned.plan == ir(
        f"""
        ir_version: 2 dataset: "ci"
        time_range {{ start_us: {NOW - 7 * DAY} }}
        aggregates {{
          function: AGGREGATE_FUNCTION_COUNT
          filter {{ {cmp("GE", "timestamp", f"int_value: {NOW - DAY}")} }}
        }}
        aggregates {{ function: AGGREGATE_FUNCTION_COUNT }}
        """
    )
    dated = plan("SELECT count_if(timestamp < '2026-11-01') FROM ci")
    assert dated.plan.aggregates[0].filter == expr(
        cmp("LT", "timestamp", f"int_value: {micros(2026, 11, 1)}")
    )
    assert not dated.plan.HasField("time_range")


def test_conditions_translate_as_where_does() -> None:
    planned = plan(
        "SELECT count(*) FILTER (WHERE NOT (suite = 'unit' OR duration IS NULL)),"
        " max(duration) FILTER (WHERE duration BETWEEN 1 AND 2 AND name LIKE 't%'),"
        " count_if(c.flaky) FROM ci AS c"
    )
    first, second, third = planned.plan.aggregates
    assert first.filter == expr(
        f"""junction {{ op: JUNCTION_OP_AND
            operands {{ {cmp("NE", "suite", 'string_value: "unit"')} }}
            operands {{ is_null {{ field: "duration" negated: true }} }} }}"""
    )
    assert second.filter == expr(
        f"""junction {{ op: JUNCTION_OP_AND
            operands {{ {cmp("GE", "duration", "int_value: 1")} }}
            operands {{ {cmp("LE", "duration", "int_value: 2")} }}
            operands {{ like {{ field: "name" pattern: "t%" }} }} }}"""
    )
    assert third.filter == expr(cmp("EQ", "flaky", "bool_value: true"))


def test_count_if_with_a_filter_takes_both_conditions() -> None:
    planned = plan("SELECT count_if(status = 'failed') FILTER (WHERE flaky) FROM ci")
    assert planned.plan.aggregates[0].filter == expr(
        f"""junction {{ op: JUNCTION_OP_AND
            operands {{ {FAILED} }}
            operands {{ {cmp("EQ", "flaky", "bool_value: true")} }} }}"""
    )


def test_filtered_aggregates_in_having_and_order_by() -> None:
    planned = plan(
        "SELECT suite FROM ci GROUP BY suite HAVING count_if(status = 'failed') > 2"
        " ORDER BY stddev(duration) FILTER (WHERE status = 'passed') DESC"
    )
    passed = cmp("EQ", "status", 'string_value: "passed"')
    assert list(planned.plan.aggregates) == list(
        ir(
            f"""
            aggregates {{ function: AGGREGATE_FUNCTION_COUNT filter {{ {FAILED} }} }}
            aggregates {{
              function: AGGREGATE_FUNCTION_STDDEV_SAMP field: "duration" filter {{ {passed} }}
            }}
            """
        ).aggregates
    )
    assert planned.having == finalexpr.Cmp(">", finalexpr.AggRef(0), finalexpr.Lit(2))
    assert planned.order == [finalexpr.SortKey(finalexpr.AggRef(1), descending=True)]
    assert planned.outputs == [finalexpr.KeyRef(0)]


def test_a_filtered_aggregate_makes_an_aggregate_query() -> None:
    planned = plan("SELECT count_if(flaky) FROM ci")
    assert planned.is_aggregate and not planned.plan.group_by


def test_stddev_spellings_share_one_aggregate() -> None:
    planned = plan(
        "SELECT stddev(duration), STDDEV_SAMP(duration) AS s, stddev_pop(duration),"
        " stddev_pop(duration) / avg(duration) AS cv FROM ci"
    )
    assert [(a.function, a.field) for a in planned.plan.aggregates] == [
        (plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP, "duration"),
        (plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP, "duration"),
        (plan_pb2.AGGREGATE_FUNCTION_AVG, "duration"),
    ]
    assert planned.columns == ["stddev(duration)", "s", "stddev_pop(duration)", "cv"]
    assert planned.outputs[:3] == [finalexpr.AggRef(0), finalexpr.AggRef(0), finalexpr.AggRef(1)]


@pytest.mark.parametrize(
    ("sql", "message", "token"),
    [
        (
            "SELECT lower(name) FILTER (WHERE a = 1) FROM ci",
            "FILTER (WHERE …) follows an aggregate, as in count(*) FILTER (WHERE status ="
            " 'failed'), and lower(name) is not one; to keep only some rows, use WHERE",
            "lower",
        ),
        (
            "SELECT suite, time_bucket(timestamp, '1h') FILTER (WHERE a = 1) FROM ci",
            "time_bucket(timestamp, '1h') is not one",
            "time_bucket",
        ),
        (
            "SELECT (count(*)) FILTER (WHERE a = 1) FROM ci",
            "write FILTER right after the aggregate, without parentheses: count(*) FILTER",
            "count",
        ),
        (
            "SELECT count(*) FILTER (WHERE count(*) > 1) FROM ci",
            "aggregate function count() is not allowed in an aggregate's condition, which picks"
            " the rows the aggregate takes; compare aggregates in HAVING",
            "WHERE |count",
        ),
        (
            "SELECT count_if(max(duration) > 1) FROM ci",
            "aggregate function max() is not allowed in an aggregate's condition",
            "max",
        ),
        (
            "SELECT sum(d) FILTER (WHERE p95(d) FILTER (WHERE a = 1) > 1) FROM ci",
            "aggregate function p95() is not allowed in an aggregate's condition",
            "WHERE |p95",
        ),
        (
            "SELECT name FROM ci WHERE count_if(a = 1) > 1",
            "count_if() is not allowed in WHERE; use HAVING",
            "count_if",
        ),
        (
            "SELECT count(*) FROM ci GROUP BY count(*) FILTER (WHERE a = 1)",
            "count() is not allowed in GROUP BY",
            "BY |count",
        ),
        ("SELECT count_if() FROM ci", "count_if() takes one condition: count_if(status =", ")"),
        ("SELECT count_if(*) FROM ci", "count_if() takes one condition", "*"),
        ("SELECT count_if(a = 1, b) FROM ci", "count_if() takes one condition", "b"),
        ("SELECT count_if(DISTINCT a) FROM ci", "count_if() takes one condition", "a"),
        ("SELECT count_if(1) FROM ci", "a condition needs a field", "1"),
        (
            "SELECT count(*) FILTER (WHERE status = NULL) FROM ci",
            "a comparison with NULL is never true; use IS NULL",
            "status",
        ),
        (
            "SELECT count(*) FILTER (WHERE timestamp > 1700000000) FROM ci",
            "1700000000 looks like seconds since the epoch",
            "1700000000",
        ),
        (
            "SELECT k, sumIf(d, a = 1) FROM ci GROUP BY k",
            "unknown function sumif(); a conditional aggregate is written sum(f) FILTER (WHERE"
            " condition)",
            "sumIf",
        ),
        ("SELECT avgIf(d, a = 1) FROM ci", "avg(f) FILTER (WHERE condition)", "avgIf"),
        (
            "SELECT stddev(DISTINCT d) FROM ci",
            "DISTINCT is only supported in count()",
            "DISTINCT |d",
        ),
        ("SELECT stddev_pop(*) FROM ci", "stddev_pop(*) is not valid; name a field", "*"),
        (
            "SELECT var_pop(d), variance(d) FROM ci",
            "the variance is not supported; it is the square of the standard deviation:"
            " stddev_pop(f) * stddev_pop(f)",
            "var_pop",
        ),
        ("SELECT var_samp(d) FROM ci", "stddev_samp(f) * stddev_samp(f)", "var_samp"),
        (
            "SELECT covar_pop(d, e) FROM ci",
            "aggregate function covar_pop() is not supported; use count, count_if, sum, avg, min,"
            " max, stddev (stddev_samp, stddev_pop), percentile or p50/p90/p95/p99",
            "covar_pop",
        ),
        (
            "SELECT count_if(a = 1) > 'x' FROM ci",
            "cannot compare a number with a string",
            "count_if",
        ),
    ],
)
def test_errors(sql: str, message: str, token: str) -> None:
    caught = error(sql)
    assert message in caught.message
    context, _, token = token.rpartition("|")
    assert caught.position == sql.index(token, sql.index(context) + len(context))
    # EXPLAIN reports the same error, at the same place.
    with pytest.raises(type(caught)) as explained:
        parse_statement("EXPLAIN " + sql, now_us=NOW)
    assert explained.value.position == caught.position + len("EXPLAIN ")
