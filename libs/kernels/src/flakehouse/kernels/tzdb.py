"""The IANA time zones of the tzdata package, for the services and the client alike: the names,
the check of a name (suggesting the closest), and a zone by name. No numpy: the CLI imports it."""

from __future__ import annotations

import difflib
import functools
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

_TZDATA = "tzdata"
"""Zones come from the tzdata package (pinned in the lock), never from the host's zoneinfo
directory, which zoneinfo.ZoneInfo(name) reads first: every node and every client must give the
same answer, and the host's copy can be older than DuckDB's ICU data (Debian's 2025b has
Tehran's 1979 change of offset an hour later)."""


@functools.cache
def zone_names() -> frozenset[str]:
    """The IANA zone names that the tzdata package holds."""
    return frozenset(resources.files(_TZDATA).joinpath("zones").read_text().split())


def check_zone(name: str) -> str:
    """`name` when it names an IANA time zone ('UTC' included), else ValueError suggesting the
    closest name: the same name in other case first, then difflib's best match."""
    if not name:
        raise ValueError("time zone name is empty; use an IANA name such as 'Europe/Paris'")
    names = zone_names()
    if name in names:
        return name
    # Compared in lower case, so that `europe/pari` finds `Europe/Paris` too.
    by_lower = {candidate.lower(): candidate for candidate in sorted(names)}
    same_case = by_lower.get(name.lower())
    close = difflib.get_close_matches(name.lower(), by_lower, n=1)
    guess = same_case or (by_lower[close[0]] if close else None)
    if guess:
        raise ValueError(f"unknown time zone {name!r}; did you mean {guess!r}?")
    raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'")


class TzdataZone(ZoneInfo):
    """A zone read from the tzdata package. Pickled by its name, as a ZoneInfo is (one read
    from a file could not be), and unpickled as the same zone from the package."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (zone, (self.key,))


@functools.lru_cache(maxsize=256)
def zone(name: str) -> TzdataZone:
    """The zone `name` from the tzdata package (ValueError as check_zone's for a name it has
    not); cached, so that a name gives the same object each time."""
    path = resources.files(f"{_TZDATA}.zoneinfo").joinpath(*check_zone(name).split("/"))
    with path.open("rb") as data:
        return TzdataZone.from_file(data, key=name)
