"""Times in answers: int microseconds since the epoch (UTC) become `datetime`s in the query's
time zone, shown as RFC 3339 with microseconds (`2026-11-20T09:14:03.512345Z`, `…+01:00`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from flakehouse.kernels import tzdb

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


def query_zone(name: str) -> tzinfo:
    """The zone of a query's times: UTC for '' (the default), else the IANA zone `name` as the
    services read it, from the tzdata package whatever the host holds (kernels' tzdb, which
    imports no numpy: the CLI starts without it); ValueError naming the closest zone when there
    is none of that name, so that a typo is refused before the query is sent."""
    return tzdb.zone(name) if name else UTC


def rfc3339_of_micros(micros: int) -> str:
    """A moment the services give in microseconds since the epoch, as RFC 3339; "" for 0 (none)."""
    moment = from_micros(micros) if micros else None
    return rfc3339(moment) if moment is not None and not isinstance(moment, int) else ""
