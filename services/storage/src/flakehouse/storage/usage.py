"""What a storage node reports to quota for one partition it holds: its sealed segments (newest
event and bytes: what deleting segments can free), its rows, the time range of everything held,
sealed or not, and the dataset generation it holds. Pure code."""

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
    generation: int = 1,
) -> quota_pb2.PartitionUsage:
    """`sealed`: (metadata, stored bytes) of each sealed segment; `open_range`: (oldest, newest)
    timestamp of the open segment's rows, None when it has none; `generation`: the dataset
    generation the replica holds (quota ignores reports of another one than the live one)."""
    held = [(meta, nbytes) for meta, nbytes in sealed if meta.row_count]
    ranges = [(meta.min_timestamp_us, meta.max_timestamp_us) for meta, _ in held]
    if open_rows and open_range is not None:
        ranges.append(open_range)
    return quota_pb2.PartitionUsage(
        dataset=dataset,
        partition=partition,
        bytes=sum(nbytes for _, nbytes in held),
        rows=sum(meta.row_count for meta, _ in held) + open_rows,
        segments=[
            quota_pb2.SegmentUsage(max_timestamp_us=meta.max_timestamp_us, bytes=nbytes)
            for meta, nbytes in held
        ],
        min_timestamp_us=min((lo for lo, _ in ranges), default=0),
        max_timestamp_us=max((hi for _, hi in ranges), default=0),
        generation=generation,
    )
