"""date_trunc() and time_bucket() calls read and checked: their unit or width, their time zone
(the query's when the call names none), and whether a fixed UTC bucket can stand for them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlglot import exp

from flakehouse.kernels.calendar import MAX_BUCKET_MONTHS, MAX_BUCKET_US, check_unit, check_zone
from flakehouse.query.sql.errors import QueryError, error_at, sql_text
from flakehouse.query.sql.sqltime import calendar_interval, months_and_us
from flakehouse.query.sql.syntax import TIMESTAMP, field_name, is_field

UTC = "UTC"

_SECOND_US = 1_000_000
# date_trunc units that are a fixed width on the UTC calendar, laid from time_bucket's origin
# (2000-01-03T00:00:00Z, a Monday at midnight): truncating to them is bucketing by them.
_FIXED_UNITS_US = {
    "second": _SECOND_US,
    "minute": 60 * _SECOND_US,
    "hour": 3600 * _SECOND_US,
    "day": 86400 * _SECOND_US,
    "week": 7 * 86400 * _SECOND_US,
}
_BUCKET_USAGE = (
    "write time_bucket(timestamp, '1h') or time_bucket(timestamp, '1 day', 'Europe/Paris')"
)


def query_zone(zone: str) -> str:
    """The query-wide zone (QueryRequest.time_zone) checked; empty means UTC."""
    try:
        return check_zone(zone or UTC)
    except ValueError as error:
        raise QueryError(f"bad time_zone: {error}") from None


def _zone(node: exp.Expr, function: str) -> str:
    if not (isinstance(node, exp.Literal) and node.is_string):
        raise error_at(
            node,
            f"the time zone of {function}() is a name in quotes such as 'Europe/Paris',"
            f" got {sql_text(node)}",
        )
    try:
        return check_zone(node.this)
    except ValueError as error:
        raise error_at(node, f"bad time zone in {function}(): {error}") from None


def _check_timestamp(node: exp.Expr, function: str, table_names: Collection[str]) -> None:
    if not is_field(node):
        raise error_at(node, f"{function}() takes the timestamp field, got {sql_text(node)}")
    name = field_name(node, table_names)
    if name != TIMESTAMP:
        raise error_at(node, f"{function}() works on timestamp, not {name}")


@dataclass(frozen=True)
class TimeBucket:
    """time_bucket(timestamp, width[, zone]): exactly one of `width_us` and `months` is set."""

    width_us: int
    months: int
    zone: str
    name: str
    """The column name when the query gives no alias."""

    @property
    def fixed_utc_us(self) -> int | None:
        """The width when the plan's fast UTC bucket (GroupKey.time_bucket_us) computes it."""
        return self.width_us if not self.months and self.zone == UTC else None


def time_bucket(node: exp.Expr, zone: str, table_names: Collection[str]) -> TimeBucket | None:
    """The bucket of a `time_bucket(timestamp, '1h'[, 'Europe/Paris'])` call (the width and the
    timestamp in either order, as DuckDB writes it too), else None. `zone` is the query's."""
    if not (isinstance(node, exp.Anonymous) and node.name.lower() == "time_bucket"):
        return None
    args = node.expressions
    if len(args) not in (2, 3):
        raise error_at(
            node, f"time_bucket() takes two or three arguments, got {len(args)}; {_BUCKET_USAGE}"
        )
    fields = [arg for arg in args[:2] if is_field(arg)]
    if len(fields) != 1:
        raise error_at(
            node, f"time_bucket() needs the timestamp field and a width; {_BUCKET_USAGE}"
        )
    name = field_name(fields[0], table_names)
    if name != TIMESTAMP:
        raise error_at(fields[0], f"time_bucket() buckets timestamp, not {name}")
    width = args[1] if args[0] is fields[0] else args[0]
    months, width_us = _width(width)
    if len(args) == 3:
        zone = _zone(args[2], "time_bucket")
        shown = sql_text(node)
    else:
        shown = f"time_bucket({TIMESTAMP}, {sql_text(width)})"
    return TimeBucket(width_us, months, zone, shown)


def _width(width: exp.Expr) -> tuple[int, int]:
    """(months, microseconds) of a bucket width, exactly one of them not 0."""
    if isinstance(width, exp.Interval):
        months, width_us = calendar_interval(width)
    elif isinstance(width, exp.Literal) and width.is_string:
        try:
            months, width_us = months_and_us(width.this)
        except ValueError as error:
            raise error_at(width, f"bad time_bucket width: {error}") from None
    else:
        raise error_at(width, f"bad time_bucket width {sql_text(width)}; {_BUCKET_USAGE}")
    if months and width_us:
        raise error_at(
            width,
            "a time_bucket width is months (or years) or a fixed time, not both:"
            f" {sql_text(width)}",
        )
    if months <= 0 and width_us <= 0:
        raise error_at(width, "time_bucket width must be positive")
    if months > MAX_BUCKET_MONTHS or width_us > MAX_BUCKET_US:
        raise error_at(width, f"time_bucket width {sql_text(width)} is more than 10,000 years")
    return months, width_us


@dataclass(frozen=True)
class DateTrunc:
    """date_trunc(unit, timestamp[, zone])."""

    unit: str
    zone: str

    @property
    def fixed_utc_us(self) -> int | None:
        """The width of the fast UTC bucket that truncates the same way, if there is one."""
        return _FIXED_UNITS_US.get(self.unit) if self.zone == UTC else None


def date_trunc(node: exp.Expr, zone: str, table_names: Collection[str]) -> DateTrunc | None:
    """The unit and zone of a `date_trunc('day', timestamp[, 'Europe/Paris'])` call, else None.
    `zone` is the query's."""
    if not isinstance(node, exp.DateTrunc):
        return None
    unit = node.args.get("unit")
    # sqlglot reads the unit as an upper-case string literal, whatever was written.
    if not isinstance(unit, exp.Literal | exp.Var):
        raise error_at(
            node, "date_trunc() takes a unit in quotes first: date_trunc('day', timestamp)"
        )
    try:
        checked = check_unit(unit.name.lower())
    except ValueError as error:
        raise error_at(node, f"bad date_trunc unit: {error}") from None
    _check_timestamp(node.this, "date_trunc", table_names)
    zone_node = node.args.get("zone")
    if zone_node is not None:
        zone = _zone(zone_node, "date_trunc")
    return DateTrunc(checked, zone)


def fixed_bucket_us(node: exp.Expr, zone: str, table_names: Collection[str]) -> int | None:
    """The width of the fast UTC bucket that a time_bucket() or date_trunc() call is, if any."""
    bucket = time_bucket(node, zone, table_names)
    if bucket is not None:
        return bucket.fixed_utc_us
    trunc = date_trunc(node, zone, table_names)
    return None if trunc is None else trunc.fixed_utc_us
