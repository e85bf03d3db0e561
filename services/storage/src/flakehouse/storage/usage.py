"""What a storage node reports to quota for one partition it holds: its sealed segments (time
range, bytes, rows: what deleting segments can free), its rows and the time range of everything
held, sealed or not. Pure code."""

from __future__ import annotations

from collections.abc import Sequence

from flakehouse.quota.v1 import quota_pb2
from flakehouse.storage.v1 import storage_pb2


def partition_usage(
    dataset: str,
    partition: int,
    sealed: Sequence[tuple[storage_pb2.Segment, int]],
    open_rows: int,
    open_range: tuple[int, int] | None,
) -> quota_pb2.PartitionUsage:
    """`sealed`: (metadata, stored bytes) of each sealed segment; `open_range`: (oldest, newest)
    timestamp of the open segment's rows, None when it has none."""
    segments = [
        quota_pb2.SegmentUsage(
            min_timestamp_us=meta.min_timestamp_us,
            max_timestamp_us=meta.max_timestamp_us,
            bytes=nbytes,
            rows=meta.row_count,
        )
        for meta, nbytes in sealed
        if meta.row_count
    ]
    ranges = [(s.min_timestamp_us, s.max_timestamp_us) for s in segments]
    if open_rows and open_range is not None:
        ranges.append(open_range)
    return quota_pb2.PartitionUsage(
        dataset=dataset,
        partition=partition,
        bytes=sum(s.bytes for s in segments),
        rows=sum(s.rows for s in segments) + open_rows,
        sealed_segments=len(segments),
        segments=segments,
        min_timestamp_us=min((lo for lo, _ in ranges), default=0),
        max_timestamp_us=max((hi for _, hi in ranges), default=0),
    )
