"""Times in answers: microseconds since the epoch as datetimes in the query's zone and RFC 3339
text with that zone's offset at each instant."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flakehouse.client.times import from_micros, query_zone, rfc3339
from flakehouse.kernels import tzdb

PARIS = ZoneInfo("Europe/Paris")


def shown(us: int, zone: str = "") -> str:
    moment = from_micros(us, query_zone(zone))
    assert isinstance(moment, datetime)
    return rfc3339(moment)


def test_microseconds_become_utc_datetimes_and_rfc3339_text() -> None:
    moment = from_micros(1_763_630_043_512_345)
    assert moment == datetime(2025, 11, 20, 9, 14, 3, 512345, tzinfo=UTC)
    assert isinstance(moment, datetime)
    assert rfc3339(moment) == "2025-11-20T09:14:03.512345Z"
    assert shown(0) == "1970-01-01T00:00:00.000000Z"
    assert shown(-1) == "1969-12-31T23:59:59.999999Z"
    paris = datetime(2026, 3, 29, 3, 0, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(paris) == "2026-03-29T03:00:00.000000+02:00"


def test_times_in_a_zone_carry_its_offset_at_each_instant_across_dst_changes() -> None:
    # Spring: at 01:00 UTC Paris goes from +01:00 to +02:00, skipping 02:00-03:00.
    assert shown(1_774_744_200_000_000, "Europe/Paris") == "2026-03-29T01:30:00.000000+01:00"
    assert shown(1_774_747_800_000_000, "Europe/Paris") == "2026-03-29T03:30:00.000000+02:00"
    # Autumn: at 01:00 UTC it goes back to +01:00, so 02:30 comes twice; the offset tells
    # the two apart.
    assert shown(1_792_888_200_000_000, "Europe/Paris") == "2026-10-25T02:30:00.000000+02:00"
    assert shown(1_792_891_800_000_000, "Europe/Paris") == "2026-10-25T02:30:00.000000+01:00"
    autumn = from_micros(1_792_891_800_000_000, PARIS)
    assert isinstance(autumn, datetime) and autumn.tzinfo is PARIS and autumn.fold == 1
    # The same instant as 01:30 UTC, though `==` across zones says no for a time in the fold
    # (PEP 495): compare timestamps, or convert first.
    assert autumn.timestamp() == datetime(2026, 10, 25, 1, 30, tzinfo=UTC).timestamp()
    assert autumn.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_utc_is_z_and_other_zones_at_plus_zero_are_not() -> None:
    us = 1_768_467_600_000_000  # 2026-01-15T09:00:00Z
    assert query_zone("") is UTC
    for name in ("", "UTC", "Etc/UTC"):
        assert shown(us, name) == "2026-01-15T09:00:00.000000Z", name
    # London in winter is at +00:00 but is not UTC: the offset says which clock it is.
    assert shown(us, "Europe/London") == "2026-01-15T09:00:00.000000+00:00"
    assert shown(us, "Asia/Kathmandu") == "2026-01-15T14:45:00.000000+05:45"
    assert shown(us, "America/St_Johns") == "2026-01-15T05:30:00.000000-03:30"


def test_a_time_beyond_what_datetime_holds_stays_an_int() -> None:
    assert from_micros(2**62) == 2**62
    assert from_micros(-(2**62)) == -(2**62)
    # In range in UTC, out of range on the zone's wall clock.
    last = int(
        (datetime(9999, 12, 31, 23, 0, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC))
        / timedelta(microseconds=1)
    )
    assert isinstance(from_micros(last), datetime)
    assert from_micros(last, ZoneInfo("Asia/Tokyo")) == last


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Europe/Pari", "unknown time zone 'Europe/Pari'; did you mean 'Europe/Paris'?"),
        ("europe/paris", "unknown time zone 'europe/paris'; did you mean 'Europe/Paris'?"),
        ("Asia/Katmandoo", "unknown time zone 'Asia/Katmandoo'; did you mean 'Asia/Katmandu'?"),
        ("xyzzy", "unknown time zone 'xyzzy'; use an IANA name such as 'Europe/Paris'"),
        # Files zoneinfo would read that are not zones of the IANA database, or not files.
        ("localtime", "unknown time zone 'localtime'"),
        ("Europe", "unknown time zone 'Europe'"),
        ("../../etc/passwd", "unknown time zone '../../etc/passwd'"),
        ("/etc/localtime", "unknown time zone '/etc/localtime'"),
    ],
)
def test_an_unknown_zone_is_refused_with_the_closest_name(name: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        query_zone(name)
    assert str(raised.value).startswith(message)


def test_zones_come_from_the_tzdata_package_not_the_host(tmp_path: Path) -> None:
    """As the services read them: a host whose zone files say otherwise (here a Europe/Paris
    holding Tokyo's rules) changes nothing."""
    tokyo = resources.files("tzdata.zoneinfo").joinpath("Asia", "Tokyo").read_bytes()
    (tmp_path / "Europe").mkdir()
    (tmp_path / "Europe" / "Paris").write_bytes(tokyo)
    winter = 1_768_467_600_000_000  # 2026-01-15T09:00:00Z
    zoneinfo.reset_tzpath([str(tmp_path)])
    ZoneInfo.clear_cache()
    tzdb.zone.cache_clear()
    try:
        host = ZoneInfo.no_cache("Europe/Paris")
        assert shown(winter, "Asia/Tokyo") == rfc3339(from_micros(winter, host))  # the trap
        assert shown(winter, "Europe/Paris") == "2026-01-15T10:00:00.000000+01:00"
    finally:
        zoneinfo.reset_tzpath()
        ZoneInfo.clear_cache()


def test_times_in_a_zone_pickle_as_that_zone() -> None:
    moment = from_micros(1_792_891_800_000_000, query_zone("Europe/Paris"))
    again = pickle.loads(pickle.dumps(moment))
    assert (
        again == moment
        and again.tzinfo is moment.tzinfo
        and again.utcoffset() == moment.utcoffset()
    )


@pytest.mark.processes
def test_the_clients_zones_import_no_numpy() -> None:
    """numpy costs the CLI about 0.2 s a start: the client's zones (kernels' tzdb) do without."""
    code = (
        "import sys, flakehouse.client.times, flakehouse.kernels.tzdb;"
        "sys.exit('numpy' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
