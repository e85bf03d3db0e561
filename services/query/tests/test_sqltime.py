"""Durations, timestamps and time expressions of the query SQL."""

from __future__ import annotations

from datetime import UTC, datetime

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
