"""date_trunc and time_bucket on a time zone's calendar, answering as DuckDB 2.0 (ICU) does.

Timestamps and answers are int64 microseconds since the epoch (UTC instants); work in Python is
per distinct unit, bucket or change of offset, never per row. Where a change of UTC offset skips
or repeats wall times, DuckDB's rules (found by experiment, checked by the tests) are:

- A truncated wall time is read back by ICU's rules (`zones`): a skipped one with the offset
  before the change (Santiago's day that skips midnight starts at 01:00), a repeated one as its
  later occurrence. So date_trunc('hour') of 01:20 EDT on New York's fall-back night is
  01:00 EST, 40 minutes after the timestamp; likewise 'day' where midnight repeats.
- date_trunc to 'second' or 'minute' keeps the timestamp's offset instead (no such jumps).
- date_trunc('quarter') truncates to the month first: where the 1st at midnight is skipped,
  the quarter starts at the time of day that midnight became (e.g. 01:00).
- time_bucket with a width in microseconds lays buckets of that many real microseconds end to
  end from 2000-01-03 00:00 in the zone: across a change of offset they start at other wall
  times (2-hour buckets start at odd hours in Paris in summer).
- time_bucket with a width in days (DuckDB's INTERVAL 'N days' or 'N weeks', unlike
  'N*24 hours') counts calendar days from 2000-01-03 in the zone with ICU's arithmetic
  (`daybuckets`): buckets start at midnight, or at the first instant after a skipped one.
  The query IR cannot tell '1 day' from '24 hours'; a width here that is a whole number of days
  is taken as days, which is what users mean.
- time_bucket with a width in months counts months from 2000-01; a bucket starts as
  date_trunc('month') would start its first month.
- A bucket start that falls after its timestamp is moved back: to the earlier occurrence of
  its (repeated) wall time when that is not after the timestamp's, else by the width (which can
  leave it at 01:00 the day before a skipped midnight, as ICU counts). Unlike date_trunc,
  time_bucket never answers a start after the timestamp.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flakehouse.kernels.arrays import per_key
from flakehouse.kernels.daybuckets import day_buckets
from flakehouse.kernels.tzdb import check_zone
from flakehouse.kernels.zones import DAY_US, SECOND_US, UTC, Micros, not_after, offsets_at, resolve

__all__ = [
    "MAX_BUCKET_MONTHS",
    "MAX_BUCKET_US",
    "ORIGIN_US",
    "TRUNC_UNITS",
    "check_unit",
    "check_zone",
    "date_trunc",
    "time_bucket",
]

TRUNC_UNITS: tuple[str, ...] = (
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "quarter",
    "year",
)

ORIGIN_US = 946_857_600_000_000
MAX_BUCKET_MONTHS = 12 * 10_000
"""The widest bucket, 10,000 years: wider ones would start outside int64 microseconds (DuckDB
says out of range), and no test history is that long."""
MAX_BUCKET_US = 10_000 * 366 * 86_400_000_000
"""2000-01-03T00:00:00Z, a Monday: DuckDB's time_bucket origin for widths in days or less."""

_MONTHS_ORIGIN = 360
"""2000-01 in months since 1970-01: DuckDB's time_bucket origin for widths in months."""
_MONDAY = 4
"""1970-01-05, the first Monday after the epoch, in days since the epoch."""
_MINUTE_US = 60 * SECOND_US
_HOUR_US = 60 * _MINUTE_US
_LIMIT_US = 1 << 62
"""Timestamps beyond ±2**62 µs (about 146,000 years from 1970) are refused: the arithmetic on
them would overflow int64."""


def check_unit(unit: str) -> str:
    """The date_trunc unit, lower-cased and singular ('Days' is 'day': DuckDB takes plurals),
    else ValueError naming the units."""
    name = unit.lower()
    if name not in TRUNC_UNITS and name.endswith("s") and name[:-1] in TRUNC_UNITS:
        name = name[:-1]
    if name not in TRUNC_UNITS:
        raise ValueError(f"unknown date_trunc unit {unit!r}; use one of {', '.join(TRUNC_UNITS)}")
    return name


def date_trunc(timestamps: npt.NDArray[np.int64], unit: str, zone: str) -> npt.NDArray[np.int64]:
    """The start of the `unit` (one of TRUNC_UNITS; weeks start on Monday) holding each
    timestamp on the calendar of `zone`: DuckDB's date_trunc(unit, timestamptz) with the
    TimeZone setting `zone`."""
    unit, name = check_unit(unit), check_zone(zone)
    instants = _checked(timestamps)
    if not len(instants):
        return instants.copy()
    offsets = offsets_at(name, instants)
    walls = instants + offsets
    if unit in ("second", "minute"):
        step = SECOND_US if unit == "second" else _MINUTE_US
        return walls - walls % step - offsets
    if unit == "hour":
        return per_key(walls // _HOUR_US, lambda hours: resolve(name, hours * _HOUR_US))
    days = walls // DAY_US
    if unit == "day":
        return per_key(days, lambda day: resolve(name, day * DAY_US))
    if unit == "week":
        weeks = (days - _MONDAY) // 7
        return per_key(weeks, lambda week: resolve(name, (week * 7 + _MONDAY) * DAY_US))
    months = per_key(days, _month_of_day)
    if unit == "month":
        return per_key(months, lambda month: resolve(name, _month_start(month)))
    if unit == "quarter":
        return per_key(months, lambda month: _quarter_start(name, month))
    return per_key(months - months % 12, lambda year: resolve(name, _month_start(year)))


def time_bucket(
    timestamps: npt.NDArray[np.int64], width_us: int, months: int, zone: str
) -> npt.NDArray[np.int64]:
    """The start of the bucket holding each timestamp, buckets being `width_us` microseconds or
    `months` months wide (exactly one of them not 0) and laid on the calendar of `zone`:
    DuckDB's time_bucket(width, timestamptz, zone), with the rules of the module docstring."""
    width_us, months = int(width_us), int(months)
    if width_us < 0 or months < 0 or (width_us == 0) == (months == 0):
        raise ValueError(
            "time_bucket needs one positive width, in microseconds or in months"
            f" (got {width_us} µs and {months} months)"
        )
    if width_us > MAX_BUCKET_US or months > MAX_BUCKET_MONTHS:
        raise ValueError("a time_bucket width may be at most 10,000 years")
    name = check_zone(zone)
    instants = _checked(timestamps)
    if not len(instants):
        return instants.copy()
    if months:
        return _month_buckets(instants, months, name)
    if width_us % DAY_US == 0 and name != UTC:
        return day_buckets(instants, width_us // DAY_US, name, ORIGIN_US)
    origin = ORIGIN_US if name == UTC else int(resolve(name, np.array([ORIGIN_US]))[0])
    return origin + (instants - origin) // width_us * width_us


def _checked(timestamps: npt.NDArray[np.int64]) -> Micros:
    instants = np.asarray(timestamps, dtype=np.int64)
    if len(instants) and max(-int(instants.min()), int(instants.max())) >= _LIMIT_US:
        raise ValueError("timestamp out of range (more than about 146,000 years from 1970)")
    return instants


def _month_of_day(days: Micros) -> Micros:
    """Months since 1970-01 of days since the epoch."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def _month_start(months: Micros) -> Micros:
    """The wall time of midnight on the 1st of months counted from 1970-01."""
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) * DAY_US


def _quarter_start(name: str, months: Micros) -> Micros:
    """date_trunc('quarter') of a time in each month: ICU truncates to the month and reads that
    back as an instant first, so a skipped midnight on the 1st moves the quarter's start to the
    time of day it became."""
    firsts = _month_start(months)
    instants = resolve(name, firsts)
    time_of_day = instants + offsets_at(name, instants) - firsts
    return resolve(name, _month_start(months - months % 3) + time_of_day)


def _month_buckets(instants: Micros, width: int, name: str) -> Micros:
    months = per_key((instants + offsets_at(name, instants)) // DAY_US, _month_of_day)
    firsts = _MONTHS_ORIGIN + (months - _MONTHS_ORIGIN) // width * width
    starts = per_key(firsts, lambda month: resolve(name, _month_start(month)))
    return not_after(name, instants, starts)
