"""Which sealed segments a drop bound (quota's ReportUsageResponse.drops) lets a node delete, and
how far behind that bound a partition still is. Pure code."""

from __future__ import annotations

from collections.abc import Iterable

from flakehouse.storage.v1 import storage_pb2


def expired(metas: Iterable[storage_pb2.Segment], before_us: int) -> set[int]:
    """Sequences of the segments whose every event is older than `before_us` (newest event below
    it). A segment with one newer row is kept whole: queries hide its older rows by the cutoff."""
    if before_us <= 0:
        return set()
    return {m.sequence for m in metas if m.row_count and m.max_timestamp_us < before_us}


def behind_us(metas: Iterable[storage_pb2.Segment], before_us: int) -> int:
    """How far below `before_us` the newest event of the oldest sealed segment is: 0 when no
    segment is entirely older than the bound (the drops keep up)."""
    oldest = min((m.max_timestamp_us for m in metas if m.row_count), default=None)
    if oldest is None or before_us <= 0:
        return 0
    return max(0, before_us - oldest)
