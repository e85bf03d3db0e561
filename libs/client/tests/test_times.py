"""Times in answers: microseconds since the epoch as UTC datetimes and RFC 3339 text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from flakehouse.client.times import from_micros, rfc3339


def test_microseconds_become_utc_datetimes_and_rfc3339_text() -> None:
    moment = from_micros(1_763_630_043_512_345)
    assert moment == datetime(2025, 11, 20, 9, 14, 3, 512345, tzinfo=UTC)
    assert isinstance(moment, datetime)
    assert rfc3339(moment) == "2025-11-20T09:14:03.512345Z"
    assert rfc3339(from_micros(0)) == "1970-01-01T00:00:00.000000Z"  # type: ignore[arg-type]
    assert rfc3339(from_micros(-1)) == "1969-12-31T23:59:59.999999Z"  # type: ignore[arg-type]
    paris = datetime(2026, 3, 29, 3, 0, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(paris) == "2026-03-29T03:00:00.000000+02:00"


def test_a_time_beyond_what_datetime_holds_stays_an_int() -> None:
    assert from_micros(2**62) == 2**62
    assert from_micros(-(2**62)) == -(2**62)
