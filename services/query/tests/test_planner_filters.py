"""The planner on WHERE: comparisons and predicates become the IR's filter, NOT is pushed to the
leaves, and bounds on timestamp are lifted into the time range."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from flakehouse.query.sql import plan_query
from services.query.tests.planner_helpers import (
    DAY,
    HOUR,
    NOW,
    SECOND,
    cmp,
    error,
    expr,
    micros,
    plan,
    where,
)

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


@pytest.mark.parametrize(
    ("condition", "unit", "moment", "micros_text"),
    [
        ("timestamp > 1700000000", "seconds", "2023-11-14T22:13:20Z", "1700000000000000"),
        (
            "timestamp >= 1700000000123",
            "milliseconds",
            "2023-11-14T22:13:20.123000Z",
            "1700000000123000",
        ),
        ("timestamp IN (1700000000)", "seconds", "2023-11-14T22:13:20Z", "1700000000000000"),
        (
            "timestamp BETWEEN 946684800 AND 4102444799",
            "seconds",
            "2000-01-01T00:00:00Z",
            "946684800000000",
        ),
    ],
)
def test_epoch_seconds_or_milliseconds_are_an_error_not_1970(
    condition: str, unit: str, moment: str, micros_text: str
) -> None:
    found = error(f"SELECT count(*) FROM ci WHERE {condition}")
    assert f"looks like {unit} since the epoch ({moment})" in found.message
    assert f"write '{moment}' or {micros_text}" in found.message
    assert found.position is not None


def test_ints_that_are_not_plausible_seconds_or_milliseconds_stay_microseconds() -> None:
    # 0, a moment of 1970 in milliseconds' range but before 2000, and real microseconds.
    assert time_range("timestamp >= 0") == (0, None)
    assert time_range("timestamp >= 900000000") == (900_000_000, None)
    assert time_range("timestamp < 4102444800") == (None, 4_102_444_800)


@pytest.mark.parametrize(
    ("now", "time"),
    [
        ("2026-03-31 12:00:00", "now() - interval '3 months'"),
        ("2026-03-31 12:00:00", "now() - interval '1 month'"),
        ("2026-03-31 12:00:00", "now() - interval '1 year 2 months 1 day'"),
        ("2024-02-29 00:00:00", "now() + interval '1 year'"),
        ("2026-01-31 06:30:00", "now() + interval '1 month 12 hours'"),
        ("2026-12-07 08:00:00", "now() - interval 2 year"),
    ],
)
def test_months_and_years_move_along_the_calendar_as_in_duckdb(now: str, time: str) -> None:
    now_us = int(datetime.fromisoformat(now).replace(tzinfo=UTC).timestamp()) * SECOND
    planned = plan_query(f"SELECT count(*) FROM ci WHERE timestamp >= {time}", now_us=now_us)
    theirs = time.replace("now()", f"TIMESTAMP '{now}'")
    (want,) = duckdb.connect().execute(f"SELECT epoch_us({theirs})").fetchall()[0]
    assert planned.plan.time_range.start_us == want
