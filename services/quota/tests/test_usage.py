"""Usage from node reports: one replica's worth per partition, every replica's, staleness, and
only the live generation of each dataset."""

from __future__ import annotations

from flakehouse.quota.usage import Totals, UsageBook
from flakehouse.quota.v1 import quota_pb2


def part(
    partition: int,
    size: int,
    rows: int,
    lo: int = 0,
    hi: int = 0,
    dataset: str = "ci",
    generation: int = 0,
) -> quota_pb2.PartitionUsage:
    return quota_pb2.PartitionUsage(
        dataset=dataset,
        partition=partition,
        bytes=size,
        rows=rows,
        min_timestamp_us=lo,
        max_timestamp_us=hi,
        segments=[quota_pb2.SegmentUsage(max_timestamp_us=hi, bytes=size)],
        generation=generation,
    )


def first(dataset: str) -> int | None:
    """Every dataset live in its first generation."""
    return 1


def test_logical_is_the_largest_replica_and_replica_bytes_the_sum() -> None:
    book = UsageBook(stale_s=60)
    book.report("n1", [part(0, 10, 1, 100, 200), part(1, 5, 2, 150, 300)], now=0)
    book.report("n2", [part(0, 8, 1, 90, 190), part(1, 6, 3, 150, 310)], now=0)
    book.report("n3", [part(0, 0, 0, dataset="empty")], now=0)
    totals = book.totals(now=1, live=first)
    assert totals["ci"] == Totals(bytes=16, rows=4, replica_bytes=29, oldest_us=90, newest_us=310)
    assert totals["empty"] == Totals()
    # The stored-bytes limit counts the segments of those same replicas.
    assert sorted(s.bytes for s in book.segments(now=1, live=first)["ci"]) == [6, 10]


def test_a_report_replaces_the_nodes_previous_one() -> None:
    book = UsageBook(stale_s=60)
    book.report("n1", [part(0, 10, 1), part(1, 5, 2)], now=0)
    book.report("n2", [part(0, 10, 1)], now=0)
    assert book.totals(now=0, live=first)["ci"].replica_bytes == 25
    book.report("n1", [part(1, 5, 2)], now=1)
    totals = book.totals(now=1, live=first)["ci"]
    assert (totals.bytes, totals.rows, totals.replica_bytes) == (15, 3, 15)


def test_stale_reports_are_forgotten() -> None:
    book = UsageBook(stale_s=30)
    book.report("n1", [part(0, 10, 1)], now=0)
    book.report("n2", [part(0, 7, 1)], now=20)
    assert book.totals(now=30, live=first)["ci"].bytes == 10
    assert book.totals(now=31, live=first)["ci"].bytes == 7  # n1 went quiet: n2's replica counts
    assert book.totals(now=51, live=first) == {}
    assert book.segments(now=51, live=first) == {}


def test_only_the_live_generation_counts() -> None:
    live = {"ci": 2, "web": 1}
    book = UsageBook(stale_s=60)
    # n1 still holds partition 0 of the deleted first dataset of the name, larger than the
    # new one's on n2: it is not the largest replica of the new one, nor any of its usage.
    book.report(
        "n1",
        [
            part(0, 100, 10, 10, 20, generation=1),
            part(0, 7, 1, dataset="web"),
            part(0, 9, 1, dataset="gone"),
        ],
        now=0,
    )
    book.report(
        "n2",
        [part(0, 30, 3, 500, 600, generation=2), part(0, 5, 1, dataset="web", generation=1)],
        now=0,
    )
    totals = book.totals(now=0, live=live.get)
    # 0 is the first generation; a dataset that is not live counts nothing.
    assert totals == {
        "ci": Totals(bytes=30, rows=3, replica_bytes=30, oldest_us=500, newest_us=600),
        "web": Totals(bytes=7, rows=1, replica_bytes=12),
    }
    assert [s.bytes for s in book.segments(now=0, live=live.get)["ci"]] == [30]
    # The reports are kept whole: a dataset read from the catalog later counts at once.
    live["gone"] = 1
    assert book.totals(now=0, live=live.get)["gone"].bytes == 9
