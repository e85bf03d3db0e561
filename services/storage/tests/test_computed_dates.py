"""date_trunc and time_bucket as computed columns, on a zone's calendar and wall clock, against
DuckDB 2.0's own (TIMESTAMPTZ in that zone): units and widths around daylight-saving changes
and before 1970; only INT values take part; the plan checks of units, widths and zones."""

from __future__ import annotations

import functools
import random
from typing import Any

import duckdb
import pytest

from flakehouse.storage import fragment
from flakehouse.storage.fragment import UnsupportedPlan

PARIS = "Europe/Paris"
ZONES = ["UTC", PARIS, "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
HOUR = 3_600_000_000
# Around the clock changes of 2024 (Paris: 31 Mar, 27 Oct; New York: 10 Mar, 3 Nov; Lord Howe:
# 7 Apr, 6 Oct, half an hour), and before 1970.
CHANGES = [
    1_711_846_800_000_000,
    1_729_990_800_000_000,
    1_710_054_000_000_000,
    1_730_613_600_000_000,
    1_712_415_600_000_000,
    1_728_142_200_000_000,
    -86_400_000_000 * 400,
]


def _timestamps() -> list[int]:
    rng = random.Random(15)
    around = [t + k * 20 * 60_000_000 for t in CHANGES for k in range(-8, 9)]
    spread = [rng.randrange(-(10**15), 2 * 10**15) for _ in range(300)]
    return around + spread


def _events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {"timestamp": t, "id": i, "t_us": t} for i, t in enumerate(_timestamps())
    ]
    events[3]["t_us"] = "not a time"
    events[4]["t_us"] = 1.5
    del events[5]["t_us"]
    return events


def _ours(kit: Any, scalar: Any) -> list[Any]:
    events = _events()
    plan = kit.plan(computed=[scalar], select=["id", "$0"], order_by=[("id", False)])
    return [row[1] for row in kit.rows(kit.run(plan, events[:100], events[100:]))]


@functools.cache
def _table() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id BIGINT, t_us BIGINT)")
    rows = [(e["id"], e["t_us"] if type(e.get("t_us")) is int else None) for e in _events()]
    con.execute(
        "INSERT INTO t SELECT * FROM (VALUES "
        + ", ".join(f"({i}, {'NULL' if t is None else t})" for i, t in rows)
        + ")"
    )
    return con


def _duck(sql: str, zone: str = "UTC") -> list[Any]:
    con = _table()
    con.execute(f"SET TimeZone = '{zone}'")
    return [row[0] for row in con.execute(f"SELECT {sql} FROM t ORDER BY id").fetchall()]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("unit", ["hour", "day", "week", "month", "year"])
def test_date_trunc_matches_duckdb(kit: Any, zone: str, unit: str) -> None:
    ours = _ours(kit, kit.call("date_trunc", kit.lit(unit), kit.ref("t_us"), kit.lit(zone)))
    assert ours == _duck(f"epoch_us(date_trunc('{unit}', make_timestamptz(t_us)))", zone)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(
    ("width", "months", "interval"),
    [
        (15 * 60_000_000, 0, "to_microseconds(900000000)"),
        (HOUR, 0, f"to_microseconds({HOUR})"),
        (2 * HOUR, 0, f"to_microseconds({2 * HOUR})"),
        # Whole days are calendar days (INTERVAL '1 day', not '24 hours': plan.proto).
        (24 * HOUR, 0, "to_days(1)"),
        (7 * 24 * HOUR, 0, "to_days(7)"),
        (0, 1, "to_months(1)"),
        (0, 3, "to_months(3)"),
        (0, 12, "to_months(12)"),
    ],
)
def test_time_bucket_matches_duckdb(
    kit: Any, zone: str, width: int, months: int, interval: str
) -> None:
    scalar = kit.call("time_bucket", "t_us", kit.lit(width), kit.lit(months), kit.lit(zone))
    sql = f"epoch_us(time_bucket({interval}, make_timestamptz(t_us), '{zone}'))"
    assert _ours(kit, scalar) == _duck(sql)


def test_buckets_of_the_timestamp_group_and_filter(kit: Any) -> None:
    day = 24 * HOUR
    paris_midnight = 1_711_839_600_000_000  # 2024-03-31T00:00+01:00, a day of 23 hours
    events = [{"timestamp": paris_midnight + k * HOUR} for k in range(48)]
    plan = kit.plan(
        computed=[
            kit.call("date_trunc", kit.lit("day"), kit.ref("timestamp"), kit.lit("Europe/Paris"))
        ],
        filter=kit.cmp("$0", ">=", paris_midnight),
        group_by=["$0"],
        aggregates=[kit.agg("count")],
    )
    groups = kit.groups(kit.run(plan, events[:20], events[20:]))
    assert groups == {
        (("int", paris_midnight),): [{**_count(23)}],
        (("int", paris_midnight + 23 * HOUR),): [{**_count(24)}],
        (("int", paris_midnight + 23 * HOUR + day),): [{**_count(1)}],
    }


def _count(n: int) -> dict[str, Any]:
    return {"count": n, "sum": 0.0, "int_sum": 0, "float_seen": False, "extreme": None}


def _trunc(k: Any, unit: Any, zone: Any) -> Any:
    return k.call("date_trunc", unit, k.ref("t"), zone)


def _bucket(k: Any, width: Any, months: Any, zone: Any = "UTC") -> Any:
    return k.call("time_bucket", "t", width, months, zone)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k: _trunc(k, k.lit("fortnight"), k.lit("UTC")), "DATE_TRUNC: unknown date_trunc"),
        (lambda k: _trunc(k, k.lit("day"), k.lit("Mars/Olympus")), "DATE_TRUNC: unknown time"),
        (lambda k: _trunc(k, k.lit("day"), k.lit("europe/paris")), "did you mean 'Europe/Paris'"),
        (lambda k: _trunc(k, k.ref("u"), k.lit("UTC")), "argument 1 of DATE_TRUNC must be a lit"),
        (lambda k: k.call("date_trunc", k.lit("day"), k.ref("t")), "takes 3 arguments"),
        (lambda k: _bucket(k, k.lit(0), k.lit(0)), "one positive width"),
        (lambda k: _bucket(k, k.lit(HOUR), k.lit(1)), "one positive width"),
        (lambda k: _bucket(k, k.lit(-HOUR), k.lit(0)), "one positive width"),
        (lambda k: _bucket(k, k.lit(0), k.lit(3_600_000)), "at most 10,000 years"),
        (lambda k: _bucket(k, k.lit(2**62), k.lit(0)), "at most 10,000 years"),
        (lambda k: _bucket(k, k.lit(HOUR), k.lit(0), k.lit("Nowhere")), "TIME_BUCKET: unknown"),
        (lambda k: _bucket(k, k.lit(1.5), k.lit(0), k.lit("UTC")), "must be int"),
        (lambda k: _bucket(k, k.ref("w"), k.lit(0), k.lit("UTC")), "must be a literal"),
    ],
)
def test_calendar_plans_are_checked(kit: Any, make: Any, message: str) -> None:
    plan = kit.plan(computed=[make(kit)], aggregates=[kit.agg("count")])
    with pytest.raises(UnsupportedPlan, match=message):
        fragment.execute(plan, [])


def test_timestamps_beyond_the_calendar_are_null(kit: Any) -> None:
    """The calendar refuses instants about 146,000 years from 1970 (its arithmetic would
    overflow): such a value gets NULL, the query does not fail."""
    values = [0, 2**62, -(2**63), 2**63 - 1, 86_400_000_000 + 5]
    events = [{"timestamp": i, "id": i, "t_us": t} for i, t in enumerate(values)]
    day = kit.call("date_trunc", kit.lit("day"), kit.ref("t_us"), kit.lit("UTC"))
    assert _column(kit, day, events) == [0, None, None, None, 86_400_000_000]
    bucket = kit.call("time_bucket", "t_us", kit.lit(HOUR), kit.lit(0), kit.lit(PARIS))
    assert _column(kit, bucket, events)[1:4] == [None, None, None]


def _column(kit: Any, scalar: Any, events: list[dict[str, Any]]) -> list[Any]:
    plan = kit.plan(computed=[scalar], select=["id", "$0"], order_by=[("id", False)])
    return [row[1] for row in kit.rows(kit.run(plan, events))]
