"""Which drop bound (quota's ReportUsageResponse.drops) applies to a replica, which sealed
segments it lets a node delete, and how far behind that bound a partition is. Pure code."""

from __future__ import annotations

from collections.abc import Iterable

from flakehouse.quota.v1 import quota_pb2
from flakehouse.storage.v1 import storage_pb2


def bound_for(
    bounds: Iterable[quota_pb2.DropBound], dataset: str, generation: int
) -> quota_pb2.DropBound | None:
    """The bound for a replica holding `generation` of `dataset`: one meant for that generation
    (or for any: 0) with a positive `before_us`; the highest when several are. A bound of
    another generation never applies: it was computed from another incarnation's usage."""
    applicable = [
        b
        for b in bounds
        if b.dataset == dataset and b.before_us > 0 and b.generation in (0, generation)
    ]
    return max(applicable, key=lambda b: b.before_us, default=None)


def expired(metas: Iterable[storage_pb2.Segment], before_us: int) -> set[int]:
    """Sequences of the segments whose every event is older than `before_us` (newest event below
    it). A segment with one newer row is kept whole: queries hide its older rows by the cutoff."""
    if before_us <= 0:
        return set()
    return {m.sequence for m in metas if m.row_count and m.max_timestamp_us < before_us}


def behind_us(metas: Iterable[storage_pb2.Segment], before_us: int) -> int:
    """How far below `before_us` the newest event of the oldest sealed segment is: 0 when no
    segment is entirely older than the bound. Measured before a drop round, it is the backlog
    that round faces: small while drops keep up, growing while they fail."""
    oldest = min((m.max_timestamp_us for m in metas if m.row_count), default=None)
    if oldest is None or before_us <= 0:
        return 0
    return max(0, before_us - oldest)
