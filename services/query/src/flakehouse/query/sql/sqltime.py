"""Time in SQL: durations ('1h', '7 days'), timestamps ('2026-11-01') and `now() - interval …`.

Everything becomes int64 microseconds since the Unix epoch (UTC), the unit of the timestamp
pseudo-field, so storage never parses a date. Wall times (a date without an offset,
current_date, an interval's days and months) are read in the query's time zone.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlglot import exp

from flakehouse.events.values import INT64_MAX, INT64_MIN
from flakehouse.kernels import zones
from flakehouse.kernels.zones import UTC as UTC_ZONE
from flakehouse.query.sql.errors import error_at, sql_text

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_SECOND_US = 1_000_000
_DAY_US = 86400 * _SECOND_US
_UNITS_US: dict[str, int] = {}
for _names, _us in (
    (("us", "usec", "usecs", "microsecond", "microseconds"), 1),
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), 1_000),
    (("s", "sec", "secs", "second", "seconds"), _SECOND_US),
    (("m", "min", "mins", "minute", "minutes"), 60 * _SECOND_US),
    (("h", "hr", "hrs", "hour", "hours"), 3600 * _SECOND_US),
    (("d", "day", "days"), 86400 * _SECOND_US),
    (("w", "week", "weeks"), 7 * 86400 * _SECOND_US),
):
    for _name in _names:
        _UNITS_US[_name] = _us

# Months and years have no fixed length in microseconds: a time_bucket width in them counts
# calendar months, and a time plus or minus them moves along the calendar (`_shift`).
_MONTH_UNITS = {"mon", "mons", "month", "months"}
_YEAR_UNITS = {"y", "yr", "yrs", "year", "years"}

_DURATION = re.compile(r"\s*(?:\d+\s*[A-Za-z]+\s*)+")
_DURATION_PART = re.compile(r"(\d+)\s*([A-Za-z]+)")

_TIME_TYPES = (
    exp.DataType.Type.DATE,
    exp.DataType.Type.DATETIME,
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPTZ,
)


def parse_duration_us(text: str) -> int:
    """Microseconds in a duration such as '30s', '5m', '1h', '7d', '1 hour' or '1 day 2 hours'.

    Raises ValueError with a message fit for the user.
    """
    months, total = months_and_us(text)
    if months:
        raise ValueError(f"months and years have no fixed length; use days or weeks in {text!r}")
    return total


def months_and_us(text: str) -> tuple[int, int]:
    """The calendar months (years count 12) and the microseconds of a duration such as
    '1 year 2 months 3 days'. Raises ValueError with a message fit for the user."""
    months, days, micros = interval_parts(text)
    return months, days * _DAY_US + micros


def interval_parts(text: str) -> tuple[int, int, int]:
    """The months (years count 12), days (weeks count 7) and microseconds of a duration, kept
    apart as an SQL interval keeps them: in a time zone, a day is a day of its calendar (23 or
    25 hours across a clock change) while hours and less are elapsed time. Raises ValueError
    with a message fit for the user."""
    if not _DURATION.fullmatch(text):
        raise ValueError(
            f"not a duration: {text!r} (expected e.g. '30s', '5m', '1h', '7d' or '1 hour')"
        )
    months = days = total = 0
    for count, unit in _DURATION_PART.findall(text):
        key = unit.lower()
        if key in _MONTH_UNITS:
            months += int(count)
        elif key in _YEAR_UNITS:
            months += 12 * int(count)
        elif key in _UNITS_US and _UNITS_US[key] % _DAY_US == 0:
            days += int(count) * (_UNITS_US[key] // _DAY_US)
        elif key in _UNITS_US:
            total += int(count) * _UNITS_US[key]
        else:
            raise ValueError(
                f"unknown time unit {unit!r} in {text!r}"
                " (use us, ms, s, m, h, d or w, or their names)"
            )
    return months, days, total


def parse_timestamp_us(text: str, zone: str = UTC_ZONE) -> int:
    """Microseconds since the epoch of a date or an ISO 8601 / RFC 3339 date-time.

    A date-time without an offset is a wall time in `zone`, the query's (UTC unless the query
    says otherwise), read as DuckDB reads it under that TimeZone.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"not a date or time: {text!r} (expected e.g. '2026-11-01' or '2026-11-01T12:00:00Z')"
        ) from None
    if moment.tzinfo is None:
        return _instant(moment.replace(tzinfo=UTC), zone)
    return (moment - _EPOCH) // _MICROSECOND


def _instant(wall: datetime, zone: str) -> int:
    """The instant of a wall time in `zone` (`wall` carries UTC only to do arithmetic), with
    DuckDB's rules for skipped and repeated wall times (flakehouse.kernels.zones)."""
    wall_us = (wall - _EPOCH) // _MICROSECOND
    if zone == UTC_ZONE:
        return wall_us
    return int(zones.resolve(zone, np.array([wall_us], dtype=np.int64))[0])


def _wall(micros: int, zone: str) -> datetime:
    """The wall time in `zone` of an instant, as a datetime labelled UTC (for arithmetic)."""
    if zone != UTC_ZONE:
        micros += int(zones.offsets_at(zone, np.array([micros], dtype=np.int64))[0])
    return _EPOCH + micros * _MICROSECOND


def _interval_text(node: exp.Interval) -> str:
    value = node.this
    unit = node.args.get("unit")
    if not isinstance(value, exp.Literal) or (unit is not None and not isinstance(unit, exp.Var)):
        raise error_at(node, f"unsupported interval {sql_text(node)}; write e.g. interval '7 days'")
    # sqlglot splits interval '7 days' into ('7', DAYS); put it back together.
    return value.name if unit is None else f"{value.name} {unit.name}"


def interval_us(node: exp.Interval) -> int:
    """Microseconds of an SQL INTERVAL of fixed length: `interval '7 days'`, `interval 1 hour`."""
    try:
        return parse_duration_us(_interval_text(node))
    except ValueError as error:
        raise error_at(node, f"bad interval: {error}") from None


def _interval_parts(node: exp.Interval) -> tuple[int, int, int]:
    try:
        return interval_parts(_interval_text(node))
    except ValueError as error:
        raise error_at(node, f"bad interval: {error}") from None


def calendar_interval(node: exp.Interval) -> tuple[int, int]:
    """(months, microseconds) of an INTERVAL that may count months and years:
    `interval '3 months'`, `interval '1 year 2 days'`."""
    try:
        return months_and_us(_interval_text(node))
    except ValueError as error:
        raise error_at(node, f"bad interval: {error}") from None


def _shift(node: exp.Expr, micros: int, months: int, days: int, zone: str) -> int:
    """`micros` moved by `months` and `days` along the calendar of `zone`, as DuckDB adds an
    interval to a TIMESTAMPTZ: the wall time moves (a day past the end of the target month
    becomes its last day: March 31 minus a month is February 28 or 29), then is read back in
    the zone, so a day across a clock change is 23 or 25 hours."""
    try:
        moment = _wall(micros, zone)
        month_index = moment.year * 12 + moment.month - 1 + months
        year, month = divmod(month_index, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        shifted = moment.replace(year=year, month=month + 1, day=day) + timedelta(days=days)
    except (OverflowError, ValueError):
        raise error_at(node, f"time out of range: {sql_text(node)}") from None
    return _instant(shifted, zone)


def time_value_us(node: exp.Expr, now_us: int, zone: str = UTC_ZONE) -> int:
    """The microseconds a time expression stands for, in a comparison with `timestamp`.

    Accepted: a date/time string, an int of microseconds, CAST/typed literals of those strings,
    now(), current_timestamp, current_date, and any of them plus or minus an INTERVAL. Dates and
    times without an offset, current_date, and days, months and years of intervals follow the
    calendar of `zone`, the query's time zone.
    """
    value = _time_value(node, now_us, zone)
    if not INT64_MIN <= value <= INT64_MAX:
        raise error_at(node, f"time out of range: {sql_text(node)}")
    return value


def _time_value(node: exp.Expr, now_us: int, zone: str) -> int:
    if isinstance(node, exp.Paren):
        return _time_value(node.this, now_us, zone)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return _timestamp_literal(node, node.this, zone)
        if node.is_int:
            return _microseconds(node, int(node.this))
        raise error_at(
            node, f"a time must be a date string or int microseconds, not {sql_text(node)}"
        )
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and node.this.is_int:
        return _microseconds(node, -int(node.this.this))
    if (
        isinstance(node, exp.Cast)
        and isinstance(node.this, exp.Literal)
        and node.this.is_string
        and node.to.this in _TIME_TYPES
    ):
        return _timestamp_literal(node, node.this.this, zone)
    if isinstance(node, exp.CurrentTimestamp) or (
        isinstance(node, exp.Anonymous) and node.name.lower() == "now" and not node.expressions
    ):
        return now_us
    if isinstance(node, exp.CurrentDate):
        today = _wall(now_us, zone)
        return _instant(today.replace(hour=0, minute=0, second=0, microsecond=0), zone)
    if isinstance(node, exp.Add | exp.Sub):
        left, right = node.this, node.expression
        if isinstance(node, exp.Add) and isinstance(left, exp.Interval):
            left, right = right, left
        if isinstance(right, exp.Interval):
            months, days, delta = _interval_parts(right)
            sign = 1 if isinstance(node, exp.Add) else -1
            base = _time_value(left, now_us, zone)
            # One step at a time, each read back in the zone, as ICU adds fields (a month that
            # lands on a skipped wall time moves past it before the days are added).
            if months:
                base = _shift(node, base, sign * months, 0, zone)
            if days:
                base = _shift(node, base, 0, sign * days, zone)
            return base + sign * delta
    if isinstance(node, exp.Interval):
        raise error_at(
            node, "an interval alone is not a time; write e.g. now() - interval '7 days'"
        )
    raise error_at(
        node,
        f"cannot use {sql_text(node)} as a time; use a date string like '2026-11-01',"
        " int microseconds, or now() - interval '7 days'",
    )


# An int compared with `timestamp` is microseconds. Read as seconds or milliseconds, a time from
# these years is what someone meant who wrote `timestamp > 1700000000`; as microseconds it would be
# a moment of January 1970, when no test ran.
_PLAUSIBLE_US = (
    (datetime(2000, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND,
    (datetime(2100, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND,
)
_OTHER_UNITS = (("seconds", _SECOND_US), ("milliseconds", 1_000))


def _microseconds(node: exp.Expr, value: int) -> int:
    """`value`, an int compared with `timestamp`, unless it reads as epoch seconds or
    milliseconds of a plausible date: then an error that says so and what to write."""
    low, high = _PLAUSIBLE_US
    for unit, scale in _OTHER_UNITS:
        if low <= value * scale < high:
            moment = _EPOCH + value * scale * _MICROSECOND
            text = moment.isoformat().replace("+00:00", "Z")
            raise error_at(
                node,
                f"{value} looks like {unit} since the epoch ({text}), but an int compared with"
                f" timestamp is microseconds; write '{text}' or {value * scale}",
            )
    return value


def _timestamp_literal(node: exp.Expr, text: str, zone: str) -> int:
    try:
        return parse_timestamp_us(text, zone)
    except ValueError as error:
        raise error_at(node, str(error)) from None
