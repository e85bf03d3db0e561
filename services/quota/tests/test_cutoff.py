"""The stored-bytes cutoff search over hand-made segments."""

from __future__ import annotations

from flakehouse.quota.cutoff import stored_bytes_cutoff
from flakehouse.quota.v1 import quota_pb2

US = 1_000_000
HOUR = 3600 * US
NOW = 1_700_000_000 * US


def seg(min_ts: int, max_ts: int, size: int) -> quota_pb2.SegmentUsage:
    """A segment of events from `min_ts` to `max_ts`: only its newest event and size count."""
    return quota_pb2.SegmentUsage(max_timestamp_us=max_ts, bytes=size)


OLD = NOW - 10 * HOUR  # far older than the newest hour


def test_under_the_limit_nothing_moves() -> None:
    segments = [seg(OLD, OLD + 10, 50), seg(OLD + 20, OLD + 30, 50)]
    assert stored_bytes_cutoff(segments, 100, NOW) is None
    assert stored_bytes_cutoff([], 100, NOW) is None


def test_oldest_segments_go_first_and_only_as_many_as_needed() -> None:
    segments = [
        seg(OLD + 200, OLD + 300, 40),
        seg(OLD, OLD + 100, 40),  # order does not matter
        seg(OLD + 400, OLD + 500, 40),
    ]
    assert stored_bytes_cutoff(segments, 100, NOW) == OLD + 101  # drops one: 80 left
    assert stored_bytes_cutoff(segments, 80, NOW) == OLD + 101
    assert stored_bytes_cutoff(segments, 79, NOW) == OLD + 301  # drops two: 40 left
    assert stored_bytes_cutoff(segments, 0, NOW) == OLD + 501


def test_segments_with_the_same_newest_event_go_together() -> None:
    segments = [
        seg(OLD, OLD + 100, 10),  # partition 0
        seg(OLD + 50, OLD + 100, 10),  # partition 1, same newest event
        seg(OLD + 200, OLD + 300, 10),
    ]
    # Dropping one of the tied would be enough, but the bound is a time: both go.
    assert stored_bytes_cutoff(segments, 25, NOW) == OLD + 101


def test_a_straddling_segment_stays_whole_and_is_counted() -> None:
    segments = [
        seg(OLD, OLD + 100, 10),
        seg(OLD + 50, OLD + 400, 30),  # straddles the first bound: not freed by it
        seg(OLD + 200, OLD + 300, 10),
    ]
    assert stored_bytes_cutoff(segments, 40, NOW) == OLD + 101
    # 30 + 10 still too much after the first: the next bound frees the third segment, not the
    # straddler, whose newest event is later.
    assert stored_bytes_cutoff(segments, 39, NOW) == OLD + 301
    assert stored_bytes_cutoff(segments, 9, NOW) == OLD + 401


def test_the_newest_hour_is_never_dropped() -> None:
    segments = [
        seg(OLD, OLD + 100, 10),
        seg(NOW - 2 * HOUR, NOW - HOUR - 1, 10),  # newest event just over an hour old
        seg(NOW - HOUR, NOW - 10, 10),  # the newest hour
    ]
    # Reaching the limit would take the newest hour: stop at the last bound before it.
    assert stored_bytes_cutoff(segments, 5, NOW) == NOW - HOUR
    only_recent = [seg(NOW - 2 * HOUR, NOW - 30 * US, 10), seg(NOW - HOUR, NOW, 10)]
    assert stored_bytes_cutoff(only_recent, 5, NOW) is None
