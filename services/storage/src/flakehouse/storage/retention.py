"""Which sealed segments to delete for retention and stored-bytes limits. Pure code."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from flakehouse.storage.v1 import storage_pb2

SegmentSize = tuple[int, storage_pb2.Segment, int]
"""(partition, segment metadata, stored bytes)"""


def choose_drops(
    segments: Iterable[SegmentSize], older_than_us: int, keep_bytes: int
) -> dict[int, set[int]]:
    """Partition → sequences to drop: every segment whose newest event is older than
    older_than_us (when set), then the oldest by newest event until the rest take at most
    keep_bytes (when set). Oldest first across partitions, so retention is even."""
    ordered = sorted(segments, key=lambda s: (s[1].max_timestamp_us, s[0], s[1].sequence))
    total = sum(size for _, _, size in ordered)
    drops: dict[int, set[int]] = defaultdict(set)
    for partition, meta, size in ordered:
        too_old = older_than_us > 0 and meta.max_timestamp_us < older_than_us
        too_big = keep_bytes > 0 and total > keep_bytes
        if not (too_old or too_big):
            break
        drops[partition].add(meta.sequence)
        total -= size
    return dict(drops)
