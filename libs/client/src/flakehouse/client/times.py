"""Times in answers: int microseconds since the epoch (UTC) become `datetime`s in the query's
time zone, shown as RFC 3339 with microseconds (`2026-11-20T09:14:03.512345Z`, `…+01:00`)."""

from __future__ import annotations

import difflib
import functools
import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo
from importlib import resources

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_micros(us: int, zone: tzinfo = UTC) -> datetime | int:
    """The moment `us` microseconds after the epoch, in `zone`; the int itself when it is beyond
    what `datetime` holds (years 1 to 9999, on the zone's wall clock)."""
    try:
        moment = _EPOCH + timedelta(microseconds=us)
        return moment if zone is UTC else moment.astimezone(zone)
    except OverflowError:
        return us


def rfc3339(moment: datetime) -> str:
    """`moment` as RFC 3339 with microseconds and its offset; `Z` when its zone is UTC, not any
    zone at +00:00 (London in winter shows `+00:00`: the reader sees which clock it is)."""
    text = moment.isoformat(timespec="microseconds")
    return text[: -len("+00:00")] + "Z" if moment.tzname() == "UTC" else text


# The services check zones with flakehouse.kernels.calendar.check_zone, but importing it
# imports numpy: about 0.2 s more on every start of the CLI, which imports no numpy today. This
# one needs zoneinfo and difflib only. It takes the names of the tzdata package, which the
# client and the services pin: the zones a server knows whatever its system holds, and no other
# file zoneinfo would read (`localtime`: a server elsewhere reads its own).
@functools.cache
def check_zone(name: str) -> tzinfo:
    """The time zone named `name` (IANA, e.g. `Europe/Paris`; empty: UTC); ValueError naming
    the closest zone when there is none of that name, so that a typo is refused before the query
    is sent."""
    if not name:
        return UTC
    if name not in _zone_names():
        raise ValueError(_unknown_zone(name))
    return zoneinfo.ZoneInfo(name)


def _unknown_zone(name: str) -> str:
    # Compared in lower case so that `europe/paris` finds `Europe/Paris`.
    by_lower = {zone.lower(): zone for zone in _zone_names()}
    close = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=0.6)
    hint = f"; did you mean {by_lower[close[0]]!r}?" if close else " (an IANA name: Europe/Paris)"
    return f"unknown time zone {name!r}{hint}"


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(resources.files("tzdata").joinpath("zones").read_text().split())
