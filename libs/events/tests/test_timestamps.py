"""Timestamp parsing and the RFC 3339 output form."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from flakehouse.events.timestamps import (
    MAX_US,
    MIN_US,
    epoch_seconds_to_us,
    format_timestamp,
    parse_timestamp,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T12:00:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T12:00:00Z", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01 12:00:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T12:00:00.5", datetime(2026, 11, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-01T12:00:00.1234567", datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-01T14:00:00+02:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T07:00:00-0500", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T12:00:00 UTC", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T12:00:00UTC", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("  2026-11-01T12:00:00 utc ", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("Sun, 01 Nov 2026 12:00:00 GMT", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        # JunitXml.TestLogger (dotnet test --logger junit) puts a blank after the T.
        ("2019-09-01T 23:56:54Z", datetime(2019, 9, 1, 23, 56, 54, tzinfo=UTC)),
        ("2019-09-01T  23:56:54.25", datetime(2019, 9, 1, 23, 56, 54, 250000, tzinfo=UTC)),
        ("Sun, 01 Nov 2026 13:00:00 +0100", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("1969-12-31T23:59:59.999999Z", datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_parse(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == us(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-13-01",
        "12:00",
        "1793534400",
        "Sun, 99 Foo",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("us_value", "text"),
    [
        (1793534400123456, "2026-11-01T12:00:00.123456Z"),
        (0, "1970-01-01T00:00:00.000000Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (MIN_US, "0001-01-01T00:00:00.000000Z"),
        (MAX_US, "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_format_round_trips(us_value: int, text: str) -> None:
    assert format_timestamp(us_value) == text
    assert parse_timestamp(text) == us_value


def test_epoch_seconds() -> None:
    assert epoch_seconds_to_us(1) == 1_000_000
    assert epoch_seconds_to_us(1.000001) == 1_000_001
    assert epoch_seconds_to_us(-0.5) == -500_000
    for bad in (float("nan"), float("inf"), 1e15, 1.8e302, -1e308, True):
        with pytest.raises(ValueError):
            epoch_seconds_to_us(bad)


def test_no_zone_means_utc_whatever_the_machine_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_timestamp("2026-11-01T12:00:00") == us(datetime(2026, 11, 1, 12, tzinfo=UTC))
        assert format_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    finally:
        monkeypatch.undo()
        time.tzset()
