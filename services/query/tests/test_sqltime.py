"""Durations, timestamps and time expressions of the query SQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import duckdb
import pytest
import sqlglot

from flakehouse.query.sql import QueryError
from flakehouse.query.sql.sqltime import parse_duration_us, parse_timestamp_us, time_value_us

SECOND = 1_000_000
NOW = 1_800_000_000 * SECOND


def micros(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * SECOND


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30 * SECOND),
        ("5m", 300 * SECOND),
        ("1h", 3600 * SECOND),
        ("1d", 86400 * SECOND),
        ("7d", 7 * 86400 * SECOND),
        ("1w", 7 * 86400 * SECOND),
        ("1 hour", 3600 * SECOND),
        ("30 minutes", 1800 * SECOND),
        ("7 DAYS", 7 * 86400 * SECOND),
        ("1 day 2 hours", 26 * 3600 * SECOND),
        ("1h30m", 5400 * SECOND),
        ("250ms", 250_000),
        ("15 us", 15),
    ],
)
def test_durations(text: str, expected: int) -> None:
    assert parse_duration_us(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a duration"),
        ("h", "not a duration"),
        ("1.5h", "not a duration"),
        ("-1h", "not a duration"),
        ("1 fortnight", "unknown time unit 'fortnight'"),
        ("1 month", "months and years have no fixed length"),
        ("2 years", "no fixed length"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration_us(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", micros(2026, 11, 1)),
        ("2026-11-01T10:30:00", micros(2026, 11, 1, 10, 30)),
        ("2026-11-01 10:30:00", micros(2026, 11, 1, 10, 30)),
        ("2026-11-01T10:30:00Z", micros(2026, 11, 1, 10, 30)),
        ("2026-11-01T12:30:00+02:00", micros(2026, 11, 1, 10, 30)),
        ("2026-11-01T10:30:00.000250", micros(2026, 11, 1, 10, 30) + 250),
        ("1969-12-31T23:59:59Z", -SECOND),
    ],
)
def test_timestamps_are_utc_microseconds(text: str, expected: int) -> None:
    assert parse_timestamp_us(text) == expected


def test_bad_timestamp() -> None:
    with pytest.raises(ValueError, match="not a date or time: '2026-13-01'"):
        parse_timestamp_us("2026-13-01")


def _time(sql_expression: str) -> int:
    node = sqlglot.parse_one(f"SELECT {sql_expression}").expressions[0]
    return time_value_us(node, NOW)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'2026-11-01'", micros(2026, 11, 1)),
        ("1700000000000000", 1_700_000_000_000_000),
        ("TIMESTAMP '2026-11-01 01:00:00'", micros(2026, 11, 1, 1)),
        ("CAST('2026-11-01' AS DATE)", micros(2026, 11, 1)),
        ("now()", NOW),
        ("current_timestamp", NOW),
        ("now() - interval '7 days'", NOW - 7 * 86400 * SECOND),
        ("now() - interval 1 hour", NOW - 3600 * SECOND),
        ("now() + interval '30 minutes'", NOW + 1800 * SECOND),
        ("'2026-11-01' + interval '1 day'", micros(2026, 11, 2)),
        ("interval '1 day' + now()", NOW + 86400 * SECOND),
        ("(now() - interval '1h') - interval '1h'", NOW - 7200 * SECOND),
        ("current_date", NOW - NOW % (86400 * SECOND)),
    ],
)
def test_time_expressions(expression: str, expected: int) -> None:
    assert _time(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("'yesterday'", "not a date or time: 'yesterday'"),
        ("1.5", "date string or int microseconds"),
        ("interval '1 day'", "an interval alone is not a time"),
        ("now() - interval '3 fortnights'", "bad interval: unknown time unit 'FORTNIGHTS'"),
        ("'9999-12-31' + interval '1 month'", "time out of range"),
        ("now() - 5", "cannot use"),
        ("'9999-12-31' + interval '100000000 weeks'", "time out of range"),
    ],
)
def test_bad_time_expressions(expression: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        _time(expression)


# Around the clock changes of 2026: Paris skips 02:00-03:00 on 29 March and repeats it on 25
# October; New York skips on 8 March and repeats 01:00-02:00 on 1 November.
ZONED = [
    "'2026-03-29 02:30:00'",
    "'2026-10-25 02:30:00'",
    "'2026-11-01 01:30:00'",
    "'2026-03-08 02:30:00'",
    "'2026-11-01'",
    "'2026-11-01T12:00:00+05:00'",
    "TIMESTAMP '2026-03-28 12:00:00' + interval '1 day'",
    "TIMESTAMP '2026-03-28 12:00:00' + interval '36 hours'",
    "'2026-10-24 12:00:00' + interval '1 week 2 hours'",
    "'2026-03-31 02:30:00' - interval '1 month'",
    "'2026-05-29 02:30:00' - interval '2 months 1 day'",
    "now() - interval '3 days'",
    "now() - interval '1 year'",
    "current_date",
]


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Asia/Kathmandu", "UTC"])
def test_wall_times_and_calendar_intervals_follow_the_query_zone_as_duckdb(zone: str) -> None:
    # The query's zone is DuckDB's TimeZone setting, and a time literal a TIMESTAMPTZ: a date
    # without an offset is a wall time there, an interval's days and months move along its
    # calendar and its hours are elapsed time. (DuckDB's plain TIMESTAMP '…' + interval would
    # add on the wall clock, zone-free: 36 hours from noon before a skipped hour land at 00:00,
    # not 01:00.)
    now = micros(2026, 3, 29, 0, 30)  # 01:30 in Paris, before its clock change
    db = duckdb.connect()
    db.execute(f"SET TimeZone = '{zone}'")
    for expression in ZONED:
        duck = (
            re.sub(r"(TIMESTAMP )?'(\d{4}-)", r"TIMESTAMPTZ '\2", expression)
            .replace("now()", f"make_timestamptz({now})")
            .replace("current_date", f"CAST(CAST(make_timestamptz({now}) AS DATE) AS TIMESTAMPTZ)")
        )
        [(want,)] = db.execute(f"SELECT epoch_us(CAST({duck} AS TIMESTAMPTZ))").fetchall()
        node = sqlglot.parse_one(f"SELECT {expression}").expressions[0]
        assert time_value_us(node, now, zone) == want, (zone, expression)
