"""Times in answers: int microseconds since the epoch (UTC) become `datetime`s in UTC, shown as
RFC 3339 with microseconds (`2026-11-20T09:14:03.512345Z`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_micros(us: int) -> datetime | int:
    """The moment `us` microseconds after the epoch, in UTC; the int itself when it is beyond
    what `datetime` holds (years 1 to 9999)."""
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        return us


def rfc3339(moment: datetime) -> str:
    """`moment` as RFC 3339 with microseconds, `Z` for UTC."""
    text = moment.isoformat(timespec="microseconds")
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text
