"""Usage from node reports: one replica's worth per partition, every replica's, and staleness."""

from __future__ import annotations

from flakehouse.quota.usage import Totals, UsageBook
from flakehouse.quota.v1 import quota_pb2


def part(
    partition: int, size: int, rows: int, lo: int = 0, hi: int = 0, dataset: str = "ci"
) -> quota_pb2.PartitionUsage:
    return quota_pb2.PartitionUsage(
        dataset=dataset,
        partition=partition,
        bytes=size,
        rows=rows,
        min_timestamp_us=lo,
        max_timestamp_us=hi,
        segments=[quota_pb2.SegmentUsage(min_timestamp_us=lo, max_timestamp_us=hi, bytes=size)],
    )


def test_logical_is_the_largest_replica_and_replica_bytes_the_sum() -> None:
    book = UsageBook(stale_s=60)
    book.report("n1", [part(0, 10, 1, 100, 200), part(1, 5, 2, 150, 300)], now=0)
    book.report("n2", [part(0, 8, 1, 90, 190), part(1, 6, 3, 150, 310)], now=0)
    book.report("n3", [part(0, 0, 0, dataset="empty")], now=0)
    totals = book.totals(now=1)
    assert totals["ci"] == Totals(bytes=16, rows=4, replica_bytes=29, oldest_us=90, newest_us=310)
    assert totals["empty"] == Totals()
    # The stored-bytes limit counts the segments of those same replicas.
    assert sorted(s.bytes for s in book.segments(now=1)["ci"]) == [6, 10]


def test_a_report_replaces_the_nodes_previous_one() -> None:
    book = UsageBook(stale_s=60)
    book.report("n1", [part(0, 10, 1), part(1, 5, 2)], now=0)
    book.report("n2", [part(0, 10, 1)], now=0)
    assert book.totals(now=0)["ci"].replica_bytes == 25
    book.report("n1", [part(1, 5, 2)], now=1)
    totals = book.totals(now=1)["ci"]
    assert (totals.bytes, totals.rows, totals.replica_bytes) == (15, 3, 15)


def test_stale_reports_are_forgotten() -> None:
    book = UsageBook(stale_s=30)
    book.report("n1", [part(0, 10, 1)], now=0)
    book.report("n2", [part(0, 7, 1)], now=20)
    assert book.totals(now=30)["ci"].bytes == 10
    assert book.totals(now=31)["ci"].bytes == 7  # n1 went quiet: n2's replica counts
    assert book.totals(now=51) == {}
    assert book.segments(now=51) == {}
