"""The planner on scalar expressions: computed columns in WHERE, raw rows, GROUP BY, aggregate
arguments and SELECT DISTINCT, date_trunc and zone-aware time buckets, folding, and typing."""

from __future__ import annotations

import duckdb
import pytest

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.values import from_value
from flakehouse.query import finalexpr
from flakehouse.query.answer import to_response
from flakehouse.query.explain import explain_lines, scalar_text
from flakehouse.query.merge import merge_partials
from flakehouse.query.sql import QueryError, plan_query
from flakehouse.query.sql.planner import PlannedQuery
from flakehouse.query.sql.scalars import is_time_column
from services.query.tests.merge_helpers import (
    distinct,
    extreme,
    group,
    groups,
    quantiles,
    rows,
    total,
)
from services.query.tests.planner_helpers import DAY, HOUR, NOW, cmp, expr, ir, micros, plan, where


def computed(planned: PlannedQuery | plan_pb2.QueryPlan) -> list[str]:
    """The plan's computed columns as SQL, `$0` first."""
    query_plan = planned.plan if isinstance(planned, PlannedQuery) else planned
    return [scalar_text(s, query_plan) for s in query_plan.computed]


def zoned(sql: str, zone: str) -> PlannedQuery:
    return plan_query(sql, now_us=NOW, zone=zone)


# -- WHERE on expressions ---------------------------------------------------------------------


def test_where_compares_a_computed_column_with_a_value() -> None:
    query_plan = where("lower(name) = 'x' AND duration * 1000 > 5 AND 100 < length(message)")
    assert query_plan == ir(
        f"""
        ir_version: 2 dataset: "ci"
        filter {{ junction {{ op: JUNCTION_OP_AND
            operands {{ {cmp("EQ", "$0", 'string_value: "x"')} }}
            operands {{ {cmp("GT", "$1", "int_value: 5")} }}
            operands {{ {cmp("GT", "$2", "int_value: 100")} }}
        }} }}
        select_fields: "name" limit: 1001
        computed {{ call {{ function: SCALAR_FUNCTION_LOWER args {{ field: "name" }} }} }}
        computed {{ call {{ function: SCALAR_FUNCTION_MULTIPLY
            args {{ field: "duration" }} args {{ literal {{ int_value: 1000 }} }} }} }}
        computed {{ call {{ function: SCALAR_FUNCTION_LENGTH args {{ field: "message" }} }} }}
        """
    )


def test_the_same_expression_is_one_computed_column() -> None:
    query_plan = where("lower(name) = 'a' OR LOWER(ci.name) LIKE 'b%' OR lower((name)) IS NULL")
    assert computed(query_plan) == ["lower(name)"]
    assert {o.WhichOneof("kind") for o in query_plan.filter.junction.operands} == {
        "compare",
        "like",
        "is_null",
    }


def test_in_like_is_null_between_and_not_on_expressions() -> None:
    query_plan = where(
        "upper(suite) IN ('API', 'DB') AND coalesce(branch, 'none') NOT LIKE 'feature/%'"
        " AND split_part(classname, '.', -1) IS NOT NULL"
        " AND NOT (duration / 2 BETWEEN 1 AND 2)"
    )
    assert computed(query_plan) == [
        "upper(suite)",
        "coalesce(branch, 'none')",
        "split_part(classname, '.', -1)",
        "duration / 2",
    ]
    in_list, like, is_null, between = query_plan.filter.junction.operands
    assert in_list.in_list.field == "$0" and not in_list.in_list.negated
    assert (like.like.field, like.like.pattern, like.like.negated) == ("$1", "feature/%", True)
    assert (is_null.is_null.field, is_null.is_null.negated) == ("$2", True)
    # NOT (x BETWEEN a AND b) is x < a OR x > b, on the computed column.
    assert between == expr(
        f"""junction {{ op: JUNCTION_OP_OR
            operands {{ {cmp("LT", "$3", "int_value: 1")} }}
            operands {{ {cmp("GT", "$3", "int_value: 2")} }} }}"""
    )


def test_regexp_matches_is_a_condition() -> None:
    query_plan = where(
        "regexp_matches(message, 'expected [0-3]') AND NOT regexp_matches(name, '^t')"
    )
    assert computed(query_plan) == [
        "regexp_matches(message, 'expected [0-3]')",
        "regexp_matches(name, '^t')",
    ]
    assert query_plan.filter == expr(
        f"""junction {{ op: JUNCTION_OP_AND
            operands {{ {cmp("EQ", "$0", "bool_value: true")} }}
            operands {{ {cmp("NE", "$1", "bool_value: true")} }} }}"""
    )


def test_ilike_is_like_on_lower_cased_string_and_pattern() -> None:
    query_plan = where("name ILIKE 'Test_LOGIN%' AND classname NOT ILIKE '%.UI.%'")
    assert computed(query_plan) == ["lower(name)", "lower(classname)"]
    first, second = query_plan.filter.junction.operands
    assert (first.like.field, first.like.pattern, first.like.negated) == (
        "$0",
        "test_login%",
        False,
    )
    assert (second.like.field, second.like.pattern, second.like.negated) == ("$1", "%.ui.%", True)
    negated = where("NOT (name ILIKE 'a%')")
    assert negated.filter.like.negated and negated.filter.like.pattern == "a%"


@pytest.mark.parametrize(
    ("condition", "plan_lines"),
    [
        # lower() twice is lower() once: no lower(lower(name)) beside an unused lower(name).
        (
            "lower(name) ILIKE '%FOO%'",
            ["computed: $0 = lower(name)", "filter: $0 LIKE '%foo%'"],
        ),
        (
            "(lower(name)) NOT ILIKE 'A%' AND lower(name) = 'b'",
            ["computed: $0 = lower(name)", "filter: $0 NOT LIKE 'a%' AND $0 = 'b'"],
        ),
        # The expression under ILIKE is typed, not added as a column of its own.
        (
            "substr(name, 1, 3) ILIKE 'AB%'",
            ["computed: $0 = lower(substr(name, 1, 3))", "filter: $0 LIKE 'ab%'"],
        ),
        (
            "upper(name) ILIKE 'a%'",
            ["computed: $0 = lower(upper(name))", "filter: $0 LIKE 'a%'"],
        ),
    ],
)
def test_ilike_computes_only_the_lower_cased_column(condition: str, plan_lines: list[str]) -> None:
    lines = explain_lines(plan_query(f"SELECT count(*) FROM ci WHERE {condition}", now_us=NOW))
    assert [line for line in lines if line.startswith(("computed:", "filter:"))] == plan_lines


def test_time_range_stays_on_timestamp_beside_expressions() -> None:
    query_plan = where("timestamp >= '2026-11-01' AND length(name) > 3")
    assert query_plan.time_range.start_us == micros(2026, 11, 1)
    assert query_plan.filter == expr(cmp("GT", "$0", "int_value: 3"))


def test_a_time_expression_is_compared_with_times() -> None:
    query_plan = where(
        "date_trunc('day', timestamp) = '2026-11-02' OR time_bucket(timestamp, '1 week') < now()"
    )
    assert computed(query_plan) == [
        "date_trunc('day', timestamp, 'UTC')",
        "time_bucket(timestamp, '7d', 'UTC')",
    ]
    day, week = query_plan.filter.junction.operands
    assert day == expr(cmp("EQ", "$0", f"int_value: {micros(2026, 11, 2)}"))
    assert week == expr(cmp("LT", "$1", f"int_value: {NOW}"))
    # Not part of the time range: only bounds on timestamp itself are.
    assert not query_plan.time_range.ListFields()


def test_literal_only_expressions_are_folded() -> None:
    query_plan = where("duration > 2 * 3 AND retries = -(7 % 2) AND ratio = 7 / 2 AND n = -7 % 2")
    values = [o.compare.value for o in query_plan.filter.junction.operands]
    assert values == [
        events_pb2.Value(int_value=6),
        events_pb2.Value(int_value=-1),
        events_pb2.Value(float_value=3.5),
        events_pb2.Value(int_value=-1),  # the dividend's sign, as in DuckDB
    ]
    assert not query_plan.computed
    assert where("name = lower('ABC')").filter == expr(cmp("EQ", "name", 'string_value: "abc"'))


# -- raw rows ---------------------------------------------------------------------------------


def test_raw_rows_select_and_order_by_expressions() -> None:
    planned = plan(
        "SELECT name, duration * 1000 AS ms, lower(classname), 'x' AS tag FROM ci"
        " ORDER BY ms DESC, length(name)"
    )
    assert computed(planned) == ["duration * 1000", "lower(classname)", "length(name)"]
    assert list(planned.plan.select_fields) == ["name", "$0", "$1", "$2"]
    assert [(o.field, o.descending) for o in planned.plan.order_by] == [("$0", True), ("$2", False)]
    assert planned.columns == ["name", "ms", "lower(classname)", "tag"]
    assert planned.outputs == [
        finalexpr.FieldRef(0),
        finalexpr.FieldRef(1),
        finalexpr.FieldRef(2),
        finalexpr.Lit("x"),
    ]


def test_raw_rows_of_a_condition_are_true_false_or_null() -> None:
    planned = plan("SELECT name, duration > 5 AS slow FROM ci")
    assert computed(planned) == [
        "CASE WHEN duration > 5 THEN TRUE WHEN duration <= 5 THEN FALSE END"
    ]
    assert planned.columns == ["name", "slow"]


def test_raw_rows_time_expressions_are_timestamps() -> None:
    planned = plan(
        "SELECT date_trunc('hour', timestamp), time_bucket(timestamp, '1d') AS d, name FROM ci"
    )
    assert planned.columns == ["date_trunc('hour', timestamp)", "d", "name"]
    response = to_response(planned, merge_partials(planned, [rows([HOUR, DAY, "a"])]))
    assert [events_pb2.ValueType.Name(c.type) for c in response.columns] == [
        "VALUE_TYPE_TIMESTAMP",
        "VALUE_TYPE_TIMESTAMP",
        "VALUE_TYPE_STRING",
    ]


# -- GROUP BY expressions ---------------------------------------------------------------------


def test_group_by_an_expression_matches_it_in_select_having_and_order_by() -> None:
    planned = plan(
        "SELECT LOWER(hostname), count(*) FROM ci GROUP BY lower(hostname)"
        " HAVING lower(hostname) != 'ci-0' ORDER BY lower(ci.hostname) DESC"
    )
    assert planned.plan == ir(
        """
        ir_version: 2 dataset: "ci"
        group_by { field: "$0" }
        aggregates { function: AGGREGATE_FUNCTION_COUNT }
        computed { call { function: SCALAR_FUNCTION_LOWER args { field: "hostname" } } }
        """
    )
    assert planned.columns == ["lower(hostname)", "count(*)"]
    assert planned.outputs == [finalexpr.KeyRef(0), finalexpr.AggRef(0)]
    assert planned.having == finalexpr.Cmp("!=", finalexpr.KeyRef(0), finalexpr.Lit("ci-0"))
    assert planned.order == [finalexpr.SortKey(finalexpr.KeyRef(0), True)]


def test_group_by_position_and_alias_of_expressions() -> None:
    planned = plan(
        "SELECT split_part(classname, '.', 3) AS area, duration * 2, count(*) FROM ci"
        " GROUP BY area, 2 ORDER BY area"
    )
    assert computed(planned) == ["split_part(classname, '.', 3)", "duration * 2"]
    assert [k.field for k in planned.plan.group_by] == ["$0", "$1"]
    assert planned.columns == ["area", "duration * 2", "count(*)"]
    # Post-merge arithmetic over an expression key still works.
    again = plan("SELECT duration * 2 + 1 FROM ci GROUP BY duration * 2")
    assert again.outputs == [finalexpr.Arith("+", finalexpr.KeyRef(0), finalexpr.Lit(1))]
    assert computed(again) == ["duration * 2"]  # the output was not sent to storage


def test_date_trunc_in_utc_is_the_fast_bucket_and_months_are_computed() -> None:
    planned = plan(
        "SELECT date_trunc('day', timestamp) AS d, date_trunc('week', timestamp),"
        " date_trunc('month', timestamp), count(*) FROM ci GROUP BY 1, 2, 3"
    )
    assert [k.WhichOneof("kind") for k in planned.plan.group_by] == [
        "time_bucket_us",
        "time_bucket_us",
        "field",
    ]
    assert [k.time_bucket_us for k in planned.plan.group_by[:2]] == [DAY, 7 * DAY]
    assert computed(planned) == ["date_trunc('month', timestamp, 'UTC')"]
    assert planned.columns == [
        "d",
        "date_trunc('week', timestamp)",
        "date_trunc('month', timestamp)",
        "count(*)",
    ]
    # The same bucket either way: one group key.
    same = plan(
        "SELECT time_bucket(timestamp, '1d'), count(*) FROM ci"
        " GROUP BY date_trunc('day', timestamp)"
    )
    assert same.outputs[0] == finalexpr.KeyRef(0) and len(same.plan.group_by) == 1


def test_calendar_and_zoned_time_buckets_are_computed_columns() -> None:
    planned = plan(
        "SELECT time_bucket(timestamp, '1 month') AS m, time_bucket(interval '1 year', timestamp),"
        " time_bucket(timestamp, '1 day', 'Europe/Paris') AS paris,"
        " time_bucket(timestamp, '1 week') AS w, count(*) FROM ci GROUP BY m, 2, paris, w"
    )
    assert computed(planned) == [
        "time_bucket(timestamp, '1 month', 'UTC')",
        "time_bucket(timestamp, '1 year', 'UTC')",
        "time_bucket(timestamp, '1d', 'Europe/Paris')",
    ]
    assert planned.plan.computed[1] == plan_pb2.Scalar(
        call=plan_pb2.ScalarCall(
            function=plan_pb2.SCALAR_FUNCTION_TIME_BUCKET,
            args=[
                plan_pb2.Scalar(field="timestamp"),
                plan_pb2.Scalar(literal=events_pb2.Value(int_value=0)),
                plan_pb2.Scalar(literal=events_pb2.Value(int_value=12)),
                plan_pb2.Scalar(literal=events_pb2.Value(string_value="UTC")),
            ],
        )
    )
    # A week is a fixed 7 days, from the Monday origin: the fast UTC bucket.
    assert planned.plan.group_by[3] == plan_pb2.GroupKey(time_bucket_us=7 * DAY)
    assert planned.columns[:2] == ["m", "time_bucket(timestamp, INTERVAL '1' YEAR)"]


def test_the_query_zone_is_the_default_of_date_trunc_and_time_bucket() -> None:
    sql = (
        "SELECT time_bucket(timestamp, '1h') AS h, date_trunc('day', timestamp) AS d,"
        " date_trunc('day', timestamp, 'UTC') AS utc, count(*) FROM ci GROUP BY h, d, utc"
    )
    planned = zoned(sql, "America/New_York")
    assert computed(planned) == [
        "time_bucket(timestamp, '1h', 'America/New_York')",
        "date_trunc('day', timestamp, 'America/New_York')",
    ]
    # A zone named in the call wins; in UTC the fast bucket serves.
    assert planned.plan.group_by[2] == plan_pb2.GroupKey(time_bucket_us=DAY)
    assert zoned(sql, "") == zoned(sql, "UTC") == plan(sql)
    with pytest.raises(QueryError, match=r"bad time_zone: .*'Europe/Pariss'") as caught:
        zoned(sql, "Europe/Pariss")
    assert caught.value.position is None
    assert "Europe/Paris" in caught.value.message  # the suggestion


def test_select_distinct_is_a_grouping() -> None:
    planned = plan(
        "SELECT DISTINCT suite, lower(status) AS s FROM ci WHERE retries > 0"
        " ORDER BY s DESC LIMIT 5"
    )
    assert planned.plan == ir(
        f"""
        ir_version: 2 dataset: "ci"
        filter {{ {cmp("GT", "retries", "int_value: 0")} }}
        group_by {{ field: "suite" }} group_by {{ field: "$0" }}
        aggregates {{ function: AGGREGATE_FUNCTION_COUNT }}
        computed {{ call {{ function: SCALAR_FUNCTION_LOWER args {{ field: "status" }} }} }}
        """
    )
    assert planned.columns == ["suite", "s"]
    assert planned.outputs == [finalexpr.KeyRef(0), finalexpr.KeyRef(1)]
    assert planned.order == [finalexpr.SortKey(finalexpr.KeyRef(1), True)]
    assert planned.limit == 5
    with pytest.raises(QueryError, match="field name must appear in the SELECT DISTINCT list"):
        plan("SELECT DISTINCT suite FROM ci ORDER BY name")


# -- aggregate arguments ----------------------------------------------------------------------


def test_aggregates_of_expressions() -> None:
    planned = plan(
        "SELECT suite, sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS fails,"
        " avg(duration * 1000), count(DISTINCT lower(name)), max(length(message)),"
        " min(date_trunc('day', timestamp)) AS first_day, p95(duration * 1000)"
        " FROM ci GROUP BY suite HAVING sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) > 0"
    )
    assert computed(planned) == [
        "CASE WHEN status = 'failed' THEN 1 ELSE 0 END",
        "duration * 1000",
        "lower(name)",
        "length(message)",
        "date_trunc('day', timestamp, 'UTC')",
    ]
    assert [(a.function, a.field) for a in planned.plan.aggregates] == [
        (plan_pb2.AGGREGATE_FUNCTION_SUM, "$0"),
        (plan_pb2.AGGREGATE_FUNCTION_AVG, "$1"),
        (plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT, "$2"),
        (plan_pb2.AGGREGATE_FUNCTION_MAX, "$3"),
        (plan_pb2.AGGREGATE_FUNCTION_MIN, "$4"),
        (plan_pb2.AGGREGATE_FUNCTION_PERCENTILE, "$1"),
    ]
    assert planned.columns == [
        "suite",
        "fails",
        "avg(duration * 1000)",
        "count(DISTINCT lower(name))",
        "max(length(message))",
        "first_day",
        "p95(duration * 1000)",
    ]
    assert planned.having == finalexpr.Cmp(">", finalexpr.AggRef(0), finalexpr.Lit(0))
    # min/max of a time expression is a time.
    states = [
        total(1, int_sum=1),
        total(1, float_sum=5.0, float_seen=True),
        distinct("a"),
        extreme(3),
        extreme(DAY),
        quantiles(5.0),
    ]
    response = to_response(planned, merge_partials(planned, [groups(group(["api"], *states))]))
    assert events_pb2.ValueType.Name(response.columns[5].type) == "VALUE_TYPE_TIMESTAMP"
    assert events_pb2.ValueType.Name(response.columns[4].type) == "VALUE_TYPE_INT"


def test_case_forms_and_conditions_on_expressions() -> None:
    planned = plan(
        "SELECT CASE suite WHEN 'api' THEN 1 WHEN 'db' THEN 2 END AS a,"
        " CASE WHEN lower(name) LIKE 'test_l%' THEN upper(name) ELSE name END AS b,"
        " if(retries > 0, 'retried', 'once') AS c FROM ci"
    )
    assert computed(planned) == [
        "CASE WHEN suite = 'api' THEN 1 WHEN suite = 'db' THEN 2 END",
        "lower(name)",
        "CASE WHEN $1 LIKE 'test_l%' THEN upper(name) ELSE name END",
        "CASE WHEN retries > 0 THEN 'retried' ELSE 'once' END",
    ]
    assert list(planned.plan.select_fields) == ["$0", "$2", "$3"]


def test_scalar_types_and_time_columns() -> None:
    planned = plan(
        "SELECT length(name) AS n, lower(name) AS l, date_trunc('month', timestamp) AS m,"
        " count(*) FROM ci GROUP BY n, l, m HAVING n > 1 AND l LIKE 'a%'"
    )
    assert [is_time_column(planned.plan, k.field) for k in planned.plan.group_by] == [
        False,
        False,
        True,
    ]
    with pytest.raises(QueryError, match="cannot compare a string with a number"):
        plan("SELECT lower(name) AS l, count(*) FROM ci GROUP BY l HAVING l > 1")
    with pytest.raises(QueryError, match="LIKE works on strings, length"):
        plan("SELECT length(name), count(*) FROM ci GROUP BY 1 HAVING length(name) LIKE '1%'")


def test_explain_shows_the_computed_columns() -> None:
    lines = explain_lines(
        plan(
            "SELECT lower(hostname) AS host, count(*) FROM ci"
            " WHERE date_trunc('day', timestamp) >= '2026-11-01' GROUP BY host"
        )
    )
    assert lines[3:7] == [
        "computed: $0 = date_trunc('day', timestamp, 'UTC'), $1 = lower(hostname)",
        "filter: $0 >= '2026-11-01T00:00:00Z'",
        "group by: $1",
        "aggregates: count(*)",
    ]
    assert lines[-1] == "columns: $1 AS host, count(*)"


@pytest.mark.parametrize(
    "expression",
    [
        "7 / 2",
        "-7 / 2",
        "7 % 3",
        "-7 % 3",
        "7 % -3",
        "7.5 % 2",
        "-7.5 % 2",
        "2 * 3 + 4 - 1",
        "-(3 - 5)",
        "1.5 * 2",
        "9223372036854775807 - 1",
        "lower('ÀB-c İ ΟΔΟΣ')",
        "upper('straße ﬁ ᾳ')",  # DuckDB's table: one code point each
        "length('héllo')",
        "coalesce(NULL, 2, 3)",
    ],
)
def test_folding_agrees_with_duckdb(expression: str) -> None:
    [(want,)] = duckdb.connect().execute(f"SELECT {expression}").fetchall()
    got = from_value(where(f"x = {expression}").filter.compare.value)
    assert got == want, (expression, got, want)  # DuckDB's decimals equal our floats
    assert isinstance(got, int) == isinstance(want, int), (expression, got, want)


def test_ilike_lowers_its_pattern_as_duckdb_does() -> None:
    # One code point at a time: U+0130 is i, a final sigma U+03C3 (Python: two code points, U+03C2).
    assert where("name ILIKE 'İSTANBUL ΟΔΟΣ%'").filter.like.pattern == "istanbul οδοσ%"


def test_folding_division_by_zero_and_overflow_are_null() -> None:
    # DuckDB answers inf, raises or overflows; the IR says NULL, and a comparison with NULL is
    # refused.
    for expression in ("1 / 0", "5 % 0", "9223372036854775807 + 1", "-(-9223372036854775807 - 1)"):
        with pytest.raises(QueryError, match="a comparison with NULL is never true"):
            where(f"x = {expression}")


@pytest.mark.parametrize(
    ("sql", "version"),
    [
        ("SELECT status, count(*) FROM ci GROUP BY status", 1),
        ("SELECT time_bucket(timestamp, '1h') AS h, count(*) FROM ci GROUP BY h", 1),
        ("SELECT time_bucket(timestamp, '1 week') AS w, count(*) FROM ci GROUP BY w", 2),
        ("SELECT lower(name) FROM ci", 2),
        ("SELECT count(*) FILTER (WHERE status = 'failed') FROM ci", 2),
        ("SELECT stddev(duration) FROM ci", 2),
    ],
)
def test_plans_say_ir_2_only_when_a_node_of_ir_1_would_misread_them(sql: str, version: int) -> None:
    # A storage node of the release before refuses IR 2: during a rolling upgrade it keeps
    # answering what it can, and never answers a filtered aggregate unfiltered.
    assert plan_query(sql, now_us=0).plan.ir_version == version
