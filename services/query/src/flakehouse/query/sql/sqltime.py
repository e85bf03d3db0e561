"""Time in SQL: durations ('1h', '7 days'), timestamps ('2026-11-01') and `now() - interval …`.

Everything becomes int64 microseconds since the Unix epoch (UTC), the unit of the timestamp
pseudo-field, so storage never parses a date.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

from sqlglot import exp

from flakehouse.events.values import INT64_MAX, INT64_MIN
from flakehouse.query.sql.errors import error_at, sql_text

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_SECOND_US = 1_000_000
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
# calendar months, and a time plus or minus them moves along the calendar (`_shift_months`).
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
    if not _DURATION.fullmatch(text):
        raise ValueError(
            f"not a duration: {text!r} (expected e.g. '30s', '5m', '1h', '7d' or '1 hour')"
        )
    months = total = 0
    for count, unit in _DURATION_PART.findall(text):
        key = unit.lower()
        if key in _MONTH_UNITS:
            months += int(count)
        elif key in _YEAR_UNITS:
            months += 12 * int(count)
        elif key in _UNITS_US:
            total += int(count) * _UNITS_US[key]
        else:
            raise ValueError(
                f"unknown time unit {unit!r} in {text!r}"
                " (use us, ms, s, m, h, d or w, or their names)"
            )
    return months, total


def parse_timestamp_us(text: str) -> int:
    """Microseconds since the epoch of a date or an ISO 8601 / RFC 3339 date-time.

    A date-time without a zone is UTC, as everywhere in Flakehouse.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"not a date or time: {text!r} (expected e.g. '2026-11-01' or '2026-11-01T12:00:00Z')"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


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


def calendar_interval(node: exp.Interval) -> tuple[int, int]:
    """(months, microseconds) of an INTERVAL that may count months and years:
    `interval '3 months'`, `interval '1 year 2 days'`."""
    try:
        return months_and_us(_interval_text(node))
    except ValueError as error:
        raise error_at(node, f"bad interval: {error}") from None


def _shift_months(node: exp.Expr, micros: int, months: int) -> int:
    """`micros` moved by `months` along the UTC calendar; a day past the end of the target month
    becomes its last day (March 31 minus a month is February 28 or 29), as in DuckDB."""
    try:
        moment = _EPOCH + micros * _MICROSECOND
        month_index = moment.year * 12 + moment.month - 1 + months
        year, month = divmod(month_index, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        shifted = moment.replace(year=year, month=month + 1, day=day)
    except (OverflowError, ValueError):
        raise error_at(node, f"time out of range: {sql_text(node)}") from None
    return (shifted - _EPOCH) // _MICROSECOND


def time_value_us(node: exp.Expr, now_us: int) -> int:
    """The microseconds a time expression stands for, in a comparison with `timestamp`.

    Accepted: a date/time string, an int of microseconds, CAST/typed literals of those strings,
    now(), current_timestamp, current_date, and any of them plus or minus an INTERVAL.
    """
    value = _time_value(node, now_us)
    if not INT64_MIN <= value <= INT64_MAX:
        raise error_at(node, f"time out of range: {sql_text(node)}")
    return value


def _time_value(node: exp.Expr, now_us: int) -> int:
    if isinstance(node, exp.Paren):
        return _time_value(node.this, now_us)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return _timestamp_literal(node, node.this)
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
        return _timestamp_literal(node, node.this.this)
    if isinstance(node, exp.CurrentTimestamp) or (
        isinstance(node, exp.Anonymous) and node.name.lower() == "now" and not node.expressions
    ):
        return now_us
    if isinstance(node, exp.CurrentDate):
        return now_us - now_us % (86400 * _SECOND_US)
    if isinstance(node, exp.Add | exp.Sub):
        left, right = node.this, node.expression
        if isinstance(node, exp.Add) and isinstance(left, exp.Interval):
            left, right = right, left
        if isinstance(right, exp.Interval):
            months, delta = calendar_interval(right)
            sign = 1 if isinstance(node, exp.Add) else -1
            base = _time_value(left, now_us)
            if months:
                base = _shift_months(node, base, sign * months)
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


def _timestamp_literal(node: exp.Expr, text: str) -> int:
    try:
        return parse_timestamp_us(text)
    except ValueError as error:
        raise error_at(node, str(error)) from None
