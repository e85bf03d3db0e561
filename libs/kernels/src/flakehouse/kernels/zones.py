"""UTC offsets of IANA time zones for many instants at once, and wall times read back as
instants as ICU (so DuckDB) reads them: zoneinfo is asked per day of time spanned, once (cached),
with the zones of the tzdata package (`tzdb`).

ICU's rules: a wall time skipped by a change of offset is read with the offset before the
change (02:30 on New York's spring-forward night is 03:30 EDT), a wall time that happens twice
is its later occurrence (01:30 on the fall-back night is 01:30 EST).
"""

from __future__ import annotations

import functools
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from flakehouse.kernels.tzdb import zone

Micros = npt.NDArray[np.int64]
"""Instants or wall times in microseconds since 1970-01-01T00:00."""

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US

UTC = "UTC"

_CHUNK_BITS = 25
"""Offsets are probed by chunks of 2**25 s (about 388 days) of UTC time, cached per zone."""
_PROBE_S = 86_400
"""Probe step. The closest changes of offset in tzdata are 7 days apart, so a step of a day
cannot step over a change and its reversal; a change found is pinned to the second by bisection."""
_MARGIN_US = 2 * DAY_US
"""Margin around the instants looked up: a wall time is at most a day (the largest offset)
away from its instant."""
_CONTIGUOUS_CHUNKS = 64
"""A lookup spanning more chunks than this only probes the chunks its instants fall in."""

_FIRST_S = -62_135_510_400
"""0001-01-02T00:00Z: before it (beyond `datetime`) the offset is that of the zone's first
rule, local mean time, which holds from the start of time anyway."""
_CYCLE_FROM_S = 13_569_465_600
"""2400-01-01T00:00Z: from here on the rules are the zone's last, yearly ones (tzdata lists no
change this late), which repeat every 400 Gregorian years; later instants are probed 400 years
earlier, so that all of DuckDB's range (to the year 294247) gets offsets."""
_CYCLE_S = 146_097 * 86_400


def _offset_s(rules: ZoneInfo, second: int) -> int:
    """The zone's UTC offset in seconds at an instant given in seconds since the epoch."""
    if second >= _CYCLE_FROM_S:
        second = _CYCLE_FROM_S + (second - _CYCLE_FROM_S) % _CYCLE_S
    offset = datetime.fromtimestamp(max(second, _FIRST_S), rules).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset.days * 86_400 + offset.seconds


@functools.lru_cache(maxsize=8192)
def _chunk_changes(name: str, chunk: int) -> tuple[tuple[int, int], ...]:
    """(second, offset in seconds from then on) at the start of a chunk and at each change of
    offset within it."""
    rules = zone(name)
    start = chunk << _CHUNK_BITS
    last = start + (1 << _CHUNK_BITS) - 1
    offset = _offset_s(rules, start)
    changes = [(start, offset)]
    before, probe = start, start
    while probe < last:
        probe = min(probe + _PROBE_S, last)
        now = _offset_s(rules, probe)
        if now != offset:
            # The change lies in (before, probe]: bisect to its first second.
            low, high = before, probe
            while high - low > 1:
                middle = (low + high) // 2
                if _offset_s(rules, middle) == offset:
                    low = middle
                else:
                    high = middle
            changes.append((high, now))
            offset = now
        before = probe
    return tuple(changes)


class Offsets:
    """A zone's UTC offsets over the chunks of time that cover some instants: `starts[i]` is
    when `offsets[i]` begins to apply (both in microseconds; the first start is a chunk's)."""

    def __init__(self, changes: list[tuple[int, int]]) -> None:
        kept: list[tuple[int, int]] = []
        for second, offset in changes:
            if not kept or offset != kept[-1][1]:
                kept.append((second, offset))
        self.starts: Micros = np.array([s for s, _ in kept], dtype=np.int64) * SECOND_US
        self.offsets: Micros = np.array([o for _, o in kept], dtype=np.int64) * SECOND_US
        # Under the rules above, offset i applies to the wall times from its start read with
        # it: a skipped wall time falls before that and keeps the offset before the change, a
        # repeated one falls after it and takes the offset after the change.
        self._wall_starts: Micros = self.starts + self.offsets

    def at(self, instants: Micros) -> Micros:
        """The offset at each instant."""
        if len(self.offsets) == 1:
            return np.broadcast_to(self.offsets[:1], instants.shape)
        return self.offsets[np.searchsorted(self.starts, instants, side="right") - 1]

    def resolve(self, walls: Micros) -> Micros:
        """The instant of each wall time, by the rules in the module docstring."""
        if len(self.offsets) == 1:
            return walls - self.offsets[:1]
        at = np.searchsorted(self._wall_starts, walls, side="right") - 1
        return walls - self.offsets[at]

    def earliest(self, walls: Micros) -> Micros:
        """The instant of each wall time, the earlier one where it happens twice (else as
        `resolve`)."""
        if len(self.offsets) == 1:
            return walls - self.offsets[:1]
        at = np.searchsorted(self._wall_starts, walls, side="right") - 1
        before = np.maximum(at - 1, 0)
        earlier = walls - self.offsets[before]
        twice = (at > 0) & (earlier < self.starts[at])
        return np.where(twice, earlier, walls - self.offsets[at])


def offsets_for(name: str, instants: Micros) -> Offsets:
    """The offsets of zone `name` around `instants` (or around the instants of wall times):
    they are looked up or resolved only within two days of these."""
    low = (int(instants.min()) - _MARGIN_US) // SECOND_US >> _CHUNK_BITS
    high = (int(instants.max()) + _MARGIN_US) // SECOND_US >> _CHUNK_BITS
    if high - low <= _CONTIGUOUS_CHUNKS:
        return _contiguous(name, low, high)
    # Far-apart instants: only the chunks that hold one (a pair of years around each).
    edges = np.concatenate([instants - _MARGIN_US, instants + _MARGIN_US]) // SECOND_US
    chunks = np.unique(edges >> _CHUNK_BITS).tolist()
    return Offsets([change for chunk in chunks for change in _chunk_changes(name, chunk)])


@functools.lru_cache(maxsize=256)
def _contiguous(name: str, low: int, high: int) -> Offsets:
    return Offsets([c for chunk in range(low, high + 1) for c in _chunk_changes(name, chunk)])


def offsets_at(name: str, instants: Micros) -> Micros:
    """The offset of zone `name` at each instant."""
    if name == UTC:
        return np.broadcast_to(np.int64(0), instants.shape)
    return offsets_for(name, instants).at(instants)


def resolve(name: str, walls: Micros) -> Micros:
    """The instant of each wall time in zone `name`, by ICU's rules."""
    if name == UTC:
        return walls
    return offsets_for(name, walls).resolve(walls)


def not_after(name: str, instants: Micros, starts: Micros) -> Micros:
    """`starts` (modified in place), where one lies after its instant at a wall time that is
    not after the instant's own and also happened earlier, at or before the instant: there.

    DuckDB's time_bucket does this (found by experiment): a bucket starting at a repeated
    midnight read as its later occurrence starts at the earlier one for a timestamp in between
    (St John's fell back at 00:01 until 2011, Havana falls back at 01:00 to midnight)."""
    late = np.flatnonzero(instants < starts)
    if len(late) and name != UTC:
        late_starts, times = starts[late], instants[late]
        walls = late_starts + offsets_at(name, late_starts)
        earlier = offsets_for(name, walls).earliest(walls)
        before = walls <= times + offsets_at(name, times)
        starts[late] = np.where(before & (earlier <= times), earlier, late_starts)
    return starts
