"""What storage nodes report they hold, and each dataset's usage from it: one replica's worth
(per partition, its largest replica) and every replica's, of the live generation of each dataset
only. Pure: the time and the live generations are passed in."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from flakehouse.quota.v1 import quota_pb2


@dataclass(frozen=True)
class Totals:
    """One dataset's usage: `bytes` and `rows` count one replica of each partition (its largest),
    `replica_bytes` every replica; oldest and newest event over every replica, 0 when empty."""

    bytes: int = 0
    rows: int = 0
    replica_bytes: int = 0
    oldest_us: int = 0
    newest_us: int = 0


@dataclass(frozen=True)
class UsageView:
    """Everything GetUsage and the metrics say about one dataset at one moment."""

    dataset: str
    totals: Totals
    events_per_second: float
    bytes_per_second: float
    cutoff: quota_pb2.Cutoff
    quota: quota_pb2.Quota
    running_queries: int


# The live generation of a dataset; None when it is not live.
LiveGeneration = Callable[[str], int | None]


@dataclass(frozen=True)
class _Report:
    received: float
    partitions: Sequence[quota_pb2.PartitionUsage]


class UsageBook:
    """The latest report of every node. A node's report replaces its previous one, and a report
    older than `stale_s` is forgotten: a node that stopped reporting holds nothing we can count
    on, and the other replica of each partition still counts once. A partition of another
    generation than the live one of its dataset does not count: the data of a deleted
    incarnation, on its way out, is not the usage of the name created again. Reports are kept
    whole and filtered when read, as the live generations change (a report may come before
    the catalog record of a new dataset is read)."""

    def __init__(self, stale_s: float) -> None:
        self._stale_s = stale_s
        self._reports: dict[str, _Report] = {}

    def report(
        self, node_id: str, partitions: Sequence[quota_pb2.PartitionUsage], now: float
    ) -> None:
        self._reports[node_id] = _Report(now, list(partitions))
        for node in [n for n, r in self._reports.items() if r.received < now - self._stale_s]:
            del self._reports[node]

    def _fresh(self, now: float, live: LiveGeneration) -> Iterator[quota_pb2.PartitionUsage]:
        for _, report in sorted(self._reports.items()):
            if report.received >= now - self._stale_s:
                for part in report.partitions:
                    # 0: a node from before generations, whose data is the first.
                    if (part.generation or 1) == live(part.dataset):
                        yield part

    def _largest(
        self, now: float, live: LiveGeneration
    ) -> dict[tuple[str, int], quota_pb2.PartitionUsage]:
        """The largest replica of each (dataset, partition); the first node by id on a tie."""
        largest: dict[tuple[str, int], quota_pb2.PartitionUsage] = {}
        for part in self._fresh(now, live):
            key = (part.dataset, part.partition)
            known = largest.get(key)
            if known is None or (part.bytes, part.rows) > (known.bytes, known.rows):
                largest[key] = part
        return largest

    def totals(self, now: float, live: LiveGeneration) -> dict[str, Totals]:
        logical: dict[str, tuple[int, int]] = {}
        for (dataset, _), part in self._largest(now, live).items():
            size, rows = logical.get(dataset, (0, 0))
            logical[dataset] = (size + part.bytes, rows + part.rows)
        replica_bytes: dict[str, int] = {}
        oldest: dict[str, int] = {}
        newest: dict[str, int] = {}
        for part in self._fresh(now, live):
            dataset = part.dataset
            replica_bytes[dataset] = replica_bytes.get(dataset, 0) + part.bytes
            if part.min_timestamp_us or part.max_timestamp_us:
                oldest[dataset] = min(
                    oldest.get(dataset, part.min_timestamp_us), part.min_timestamp_us
                )
                newest[dataset] = max(
                    newest.get(dataset, part.max_timestamp_us), part.max_timestamp_us
                )
        return {
            dataset: Totals(
                bytes=logical[dataset][0],
                rows=logical[dataset][1],
                replica_bytes=replica_bytes[dataset],
                oldest_us=oldest.get(dataset, 0),
                newest_us=newest.get(dataset, 0),
            )
            for dataset in sorted(logical)
        }

    def segments(self, now: float, live: LiveGeneration) -> dict[str, list[quota_pb2.SegmentUsage]]:
        """Per dataset, the sealed segments of the largest replica of each of its partitions:
        what the stored-bytes limit counts."""
        found: dict[str, list[quota_pb2.SegmentUsage]] = {}
        for (dataset, _), part in sorted(self._largest(now, live).items()):
            found.setdefault(dataset, []).extend(part.segments)
        return found
