"""Where the stored-bytes limit puts a dataset's floor: its oldest sealed segments go first,
never the newest hour. Pure: the time is passed in."""

from __future__ import annotations

from collections.abc import Iterable

from flakehouse.quota.v1 import quota_pb2

NEWEST_KEPT_US = 3600 * 1_000_000


def stored_bytes_cutoff(
    segments: Iterable[quota_pb2.SegmentUsage], limit: int, now_us: int
) -> int | None:
    """The smallest T such that dropping every segment whose newest event is older than T
    brings the segments' bytes to at most `limit`; when reaching the limit would take events of
    the last hour, the largest such T that keeps them. None when nothing has to or may go.

    T is always a segment's newest event + 1: a bound between segments frees as much as any T
    up to the next one and hides fewer events (those of segments that straddle it)."""
    ordered = sorted(segments, key=lambda s: s.max_timestamp_us)
    remaining = sum(s.bytes for s in ordered)
    latest = now_us - NEWEST_KEPT_US
    cutoff: int | None = None
    i = 0
    while i < len(ordered) and remaining > limit:
        newest = ordered[i].max_timestamp_us
        if newest + 1 > latest:
            break
        # Every segment with the same newest event goes too: the bound is a timestamp.
        while i < len(ordered) and ordered[i].max_timestamp_us == newest:
            remaining -= ordered[i].bytes
            i += 1
        cutoff = newest + 1
    return cutoff
