"""time_bucket in a time zone for widths in whole days, as DuckDB computes it with ICU's day
arithmetic (Calendar::add and fieldDifference), reproduced with numpy.

Adding days to an instant keeps its time of day across changes of offset, so buckets start at
midnight; but where midnight was skipped the day's bucket starts at the first instant after
(e.g. 01:00), and ICU then keeps that time of day for the buckets counted back from it. Each
bucket start is computed once per distinct bucket, not per row.
"""

from __future__ import annotations

import numpy as np

from flakehouse.kernels.arrays import per_key
from flakehouse.kernels.zones import DAY_US, Micros, not_after, offsets_at, offsets_for, resolve

_STEPS = 8
"""Steps from a timestamp's day on the wall clock to ICU's count of days: two suffice in
every zone of tzdata."""


def day_buckets(instants: Micros, width: int, name: str, origin_wall: int) -> Micros:
    """The start of the bucket of `width` days holding each instant, buckets being counted from
    the wall time `origin_wall` (midnight) in zone `name`.

    DuckDB counts the days from the origin to the timestamp as ICU's fieldDifference does (the
    most days that, added to the origin, do not pass the timestamp cut to milliseconds; one
    more before the origin, unless that lands on it exactly), rounds the count towards zero to
    a multiple of the width and adds it to the origin. A start after the timestamp is moved to
    the earlier occurrence of its wall time if that suits (see `zones.not_after`), else a width
    back, as often as needed."""
    origin = int(resolve(name, np.array([origin_wall], dtype=np.int64))[0])
    origin_day = origin_wall // DAY_US

    def from_origin(days: Micros) -> Micros:
        return add_days(name, np.array([origin], dtype=np.int64), days)

    target = instants - np.fmod(instants, 1000)
    count = (target + offsets_at(name, target)) // DAY_US - origin_day
    for _ in range(_STEPS):
        # The origin plus the day count of the wall clock can still be a day off: where the
        # origin's midnight is skipped or repeated, or the offset moved by a day (Apia).
        down = per_key(count, from_origin) > target
        up = ~down & (per_key(count + 1, from_origin) <= target)
        if not (down.any() or up.any()):
            break
        count = count - down + up
    count += (target < origin) & (per_key(count, from_origin) != target)
    first_days = np.where(count < 0, -(-count // width), count // width) * width
    starts = not_after(name, instants, per_key(first_days, from_origin))
    late = instants < starts
    while late.any():
        starts[late] = add_days(name, starts[late], -width)
        late = instants < starts
    return starts


def add_days(name: str, base: Micros, days: Micros | int) -> Micros:
    """ICU's Calendar::add(DATE, days) from instants `base` in zone `name`: `days` times 24 h
    later, moved by the change of offset in between (its remainder modulo a day) so that the
    time of day stays that of `base`. Where that time of day does not exist on the day reached,
    a move forward is kept and a move back is dropped (ICU's default, WALLTIME_LAST)."""
    base_offsets = offsets_at(name, base)
    time_of_day = (base + base_offsets) % DAY_US
    reached = base + np.asarray(days, dtype=np.int64) * DAY_US
    offsets = offsets_for(name, reached)
    shift = base_offsets - offsets.at(reached)
    shift = np.sign(shift) * (np.abs(shift) % DAY_US)
    moved = reached + shift
    moved_time = (moved + offsets.at(moved)) % DAY_US
    return np.where((shift < 0) & (moved_time != time_of_day), reached, moved)
