"""date_trunc and time_bucket on zone calendars: against DuckDB 2.0 over timestamps crowded
around changes of offset, and by hand for the cases that pin DuckDB's rules down."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import numpy.typing as npt
import pytest

from flakehouse.kernels.calendar import (
    ORIGIN_US,
    TRUNC_UNITS,
    check_unit,
    check_zone,
    date_trunc,
    time_bucket,
)
from flakehouse.kernels.zones import offsets_for

Micros = npt.NDArray[np.int64]

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# DuckDB's interval, and the same width as time_bucket takes it (microseconds, months).
WIDTHS = {
    "1 second": (SECOND, 0),
    "15 minutes": (15 * MINUTE, 0),
    "1 hour": (HOUR, 0),
    "90 minutes": (90 * MINUTE, 0),
    "1 day": (DAY, 0),
    "7 days": (7 * DAY, 0),
    "1 month": (0, 1),
    "3 months": (0, 3),
    "12 months": (0, 12),
}

# Zone, and the years its random timestamps are drawn from. Beyond the brief's zones: Havana
# (midnight repeats: later occurrence vs. a bucket's start), Sao Paulo (skipped midnight,
# buckets moved back twice), Apia (skipped a whole day in 2011). Havana stops before 2027 and
# Sao Paulo starts in 1970: there DuckDB's ICU data and tzdata 2026 disagree on the rules.
ZONES = [
    ("UTC", 1850, 2110),
    ("Europe/Paris", 1850, 2110),
    ("America/New_York", 1850, 2110),
    ("Australia/Lord_Howe", 1850, 2110),
    ("Asia/Kolkata", 1850, 2110),
    ("Pacific/Chatham", 1850, 2110),
    ("America/St_Johns", 1850, 2110),
    ("America/Santiago", 1850, 2110),
    ("Australia/Sydney", 1850, 2110),
    ("America/Havana", 1850, 2026),
    ("America/Sao_Paulo", 1970, 2110),
    ("Pacific/Apia", 1850, 2110),
]


def us(text: str) -> int:
    """Microseconds since the epoch of an ISO date-time in UTC."""
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return int(moment.timestamp()) * SECOND + moment.microsecond


def year_us(year: int) -> int:
    return us(f"{year:04d}-01-01T00:00:00")


def changes(zone: str, first_year: int, end_year: int) -> list[int]:
    """The instants (µs) at which the zone's UTC offset changes, found with zoneinfo alone:
    offsets a day apart, then bisection to the second."""
    tz = ZoneInfo(zone)

    def offset(second: int) -> object:
        return datetime.fromtimestamp(second, tz).utcoffset()

    days = range(year_us(first_year) // SECOND, year_us(end_year) // SECOND, 86_400)
    offsets = [offset(day) for day in days]
    found = []
    for day, before, after in zip(days, offsets, offsets[1:], strict=False):
        if before != after:
            low, high = day, day + 86_400
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == before else (low, middle)
            found.append(high * SECOND)
    return found


NEAR = np.array(
    [1, 30 * SECOND, 61 * SECOND, HOUR + 1, 90 * MINUTE, DAY], dtype=np.int64
) * np.array([[-1], [1]])
"""Offsets from a change of offset sampled in every zone: just before and after it, around the
minute (St John's changed at 00:01), the hour, and a day."""


def sample(zone: str, first_year: int, end_year: int) -> tuple[Micros, slice]:
    """Random timestamps over the zone's years (some before 1970), dense ones within two days of
    every change of offset from 1990 to 2040 and of some before 1970, then a block of
    timestamps within 15 days of one change (its slice is returned): the kernels evaluate a
    block per distinct day or hour, the spread sample per row."""
    rng = np.random.default_rng(zlib.crc32(zone.encode()))
    parts = [rng.integers(year_us(first_year), year_us(end_year), 1500)]
    recent = changes(zone, max(first_year, 1990), min(end_year, 2040))
    early = changes(zone, max(first_year, 1900), 1970)[::4]
    for change in recent + early:
        parts += [change + rng.integers(-2 * DAY, 2 * DAY, 30), change + NEAR.ravel()]
    spread = np.concatenate(parts)
    center = recent[len(recent) // 2] if recent else year_us(2026)
    block = center + rng.integers(-15 * DAY, 15 * DAY, 3000)
    return np.concatenate([spread, block]).astype(np.int64), slice(len(spread), None)


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        yield connection


def duckdb_answers(db: duckdb.DuckDBPyConnection, zone: str, ts: Micros) -> dict[str, Micros]:
    """DuckDB's date_trunc for every unit (TimeZone set to the zone) and time_bucket for every
    width, in one query."""
    db.execute(f"SET TimeZone = '{zone}'")
    columns = [f"epoch_us(date_trunc('{unit}', t)) AS \"{unit}\"" for unit in TRUNC_UNITS]
    columns += [
        f"epoch_us(time_bucket(INTERVAL '{width}', t, '{zone}')) AS \"{width}\"" for width in WIDTHS
    ]
    query = (
        f"SELECT {', '.join(columns)} FROM (SELECT make_timestamptz(us) AS t, i"
        " FROM unnest(?::BIGINT[]) WITH ORDINALITY AS u(us, i)) ORDER BY i"
    )
    answers: dict[str, Micros] = db.execute(query, [ts.tolist()]).fetchnumpy()
    return answers


def mismatches(got: Micros, expected: Micros, ts: Micros) -> list[tuple[str, str, str]]:
    wrong = np.flatnonzero(got != expected)[:5]
    iso = [str(np.datetime64(int(x), "us")) for x in (*ts[wrong], *got[wrong], *expected[wrong])]
    k = len(wrong)
    return list(zip(iso[:k], iso[k : 2 * k], iso[2 * k :], strict=True))


@pytest.mark.parametrize(("zone", "first_year", "end_year"), ZONES, ids=[z[0] for z in ZONES])
def test_as_duckdb_around_changes_of_offset(
    db: duckdb.DuckDBPyConnection, zone: str, first_year: int, end_year: int
) -> None:
    ts, block = sample(zone, first_year, end_year)
    expected = duckdb_answers(db, zone, ts)
    for unit in TRUNC_UNITS:
        for part in (slice(None), block):
            got = date_trunc(ts[part], unit, zone)
            assert not mismatches(got, expected[unit][part], ts[part]), (unit, part)
    for width, (width_us, months) in WIDTHS.items():
        for part in (slice(None), block):
            got = time_bucket(ts[part], width_us, months, zone)
            assert not mismatches(got, expected[width][part], ts[part]), (width, part)


def test_a_paris_day_of_23_hours() -> None:
    # 2026-03-29 in Paris runs from 00:00 CET (23:00Z the day before) to 00:00 CEST (22:00Z).
    ts = np.array([us("2026-03-29T12:00:00"), us("2026-03-30T12:00:00")])
    expected = [us("2026-03-28T23:00:00"), us("2026-03-29T22:00:00")]
    assert date_trunc(ts, "day", "Europe/Paris").tolist() == expected
    assert time_bucket(ts, DAY, 0, "Europe/Paris").tolist() == expected


def test_truncating_in_a_repeated_hour_reads_the_later_occurrence() -> None:
    # 01:20 EDT on New York's fall-back night: its hour is 01:00 EST, 40 minutes later, as in
    # DuckDB; below the hour the timestamp's offset is kept.
    ts = np.array([us("2026-11-01T05:20:34")])
    assert date_trunc(ts, "hour", "America/New_York").tolist() == [us("2026-11-01T06:00:00")]
    assert date_trunc(ts, "minute", "America/New_York").tolist() == [us("2026-11-01T05:20:00")]
    assert date_trunc(ts, "second", "America/New_York").tolist() == [us("2026-11-01T05:20:34")]


def test_a_day_without_midnight_starts_at_its_first_instant() -> None:
    # Santiago skips from 2026-09-06 00:00 -04 to 01:00 -03.
    ts = np.array([us("2026-09-06T15:00:00")])
    assert date_trunc(ts, "day", "America/Santiago").tolist() == [us("2026-09-06T04:00:00")]


def test_weeks_start_on_monday() -> None:
    # Sunday 2026-03-08 and Monday 2026-03-09, noon in Sydney (+11).
    ts = np.array([us("2026-03-08T01:00:00"), us("2026-03-09T01:00:00")])
    monday = [us("2026-03-01T13:00:00"), us("2026-03-08T13:00:00")]
    assert date_trunc(ts, "week", "Australia/Sydney").tolist() == monday
    assert time_bucket(ts, 7 * DAY, 0, "Australia/Sydney").tolist() == monday


def test_fixed_widths_are_real_time_from_the_zone_origin() -> None:
    # Two-hour buckets from 2000-01-03 00:00 CET start at even hours in Paris winter, at odd
    # hours in summer; a width of whole days counts calendar days instead.
    winter, summer = us("2026-01-15T11:30:00"), us("2026-07-15T11:30:00")
    ts = np.array([winter, summer])
    assert time_bucket(ts, 2 * HOUR, 0, "Europe/Paris").tolist() == [
        us("2026-01-15T11:00:00"),  # 12:00 CET
        us("2026-07-15T11:00:00"),  # 13:00 CEST
    ]
    assert time_bucket(ts, DAY, 0, "Europe/Paris").tolist() == [
        us("2026-01-14T23:00:00"),
        us("2026-07-14T22:00:00"),
    ]


def test_utc_is_floor_division_from_the_origin() -> None:
    assert us("2000-01-03T00:00:00") == ORIGIN_US == 946_857_600_000_000
    ts = np.random.default_rng(3).integers(-(10**17), 10**17, 10_000)
    for width in (SECOND, 15 * MINUTE, 90 * MINUTE, DAY, 7 * DAY):
        expected = ORIGIN_US + (ts - ORIGIN_US) // width * width
        assert (time_bucket(ts, width, 0, "UTC") == expected).all()


def test_empty_old_and_far_timestamps() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert date_trunc(empty, "day", "Europe/Paris").dtype == np.int64
    assert len(time_bucket(empty, 0, 1, "Europe/Paris")) == 0
    ts = np.array([us("1901-07-14T12:00:00"), us("2100-07-14T12:00:00")])
    assert date_trunc(ts, "month", "Europe/Paris").tolist() == [
        us("1901-06-30T23:50:39"),  # Paris mean time, +0:09:21
        us("2100-06-30T22:00:00"),
    ]
    with pytest.raises(ValueError, match="out of range"):
        date_trunc(np.array([2**63 - 1]), "day", "UTC")


@pytest.mark.parametrize(("width_us", "months"), [(0, 0), (HOUR, 1), (-HOUR, 0), (0, -1)])
def test_time_bucket_needs_one_positive_width(width_us: int, months: int) -> None:
    with pytest.raises(ValueError, match="one positive width"):
        time_bucket(np.array([0]), width_us, months, "UTC")


def test_zone_names() -> None:
    assert check_zone("UTC") == "UTC"
    assert check_zone("America/St_Johns") == "America/St_Johns"
    with pytest.raises(ValueError) as error:
        check_zone("Europe/Pari")
    assert str(error.value) == "unknown time zone 'Europe/Pari'; did you mean 'Europe/Paris'?"
    with pytest.raises(ValueError, match="did you mean 'Europe/Paris'"):
        check_zone("europe/paris")
    for bad in ("", "localtime", "+05:00"):
        with pytest.raises(ValueError):
            check_zone(bad)
    with pytest.raises(ValueError, match="unknown time zone"):
        date_trunc(np.array([0]), "day", "Mars/Olympus_Mons")


def test_units() -> None:
    assert [check_unit(unit) for unit in ("Day", "WEEKS", "quarters", "second")] == [
        "day",
        "week",
        "quarter",
        "second",
    ]
    with pytest.raises(ValueError) as error:
        check_unit("fortnight")
    assert "second, minute, hour, day, week, month, quarter, year" in str(error.value)
    with pytest.raises(ValueError):
        date_trunc(np.array([0]), "decade", "UTC")


@pytest.mark.parametrize("zone", ["Europe/Paris", "Australia/Lord_Howe", "Pacific/Apia"])
def test_offsets_are_zoneinfos(zone: str) -> None:
    # From the tzdata package, as the kernels read it; some after 2400, from which on offsets
    # are looked up 400 years earlier (the rules repeat).
    with resources.files("tzdata.zoneinfo").joinpath(*zone.split("/")).open("rb") as data:
        tz = ZoneInfo.from_file(data, key=zone)
    rng = np.random.default_rng(11)
    ts = np.concatenate(
        [
            rng.integers(year_us(1800), year_us(2200), 1000),
            rng.integers(year_us(2400), year_us(9000), 50),
        ]
    )
    near = np.array(changes(zone, 2020, 2030), dtype=np.int64)
    ts = np.concatenate([ts, near - 1, near])
    expected = []
    for t in ts.tolist():
        offset = datetime.fromtimestamp(t // SECOND, tz).utcoffset()
        assert offset is not None
        expected.append(int(offset.total_seconds()))
    assert (offsets_for(zone, ts).at(ts) // SECOND).tolist() == expected
