"""The quota service's state: limits per dataset, their token buckets, and reported usage.
Pure: persistence and time come from outside."""

from __future__ import annotations

from dataclasses import dataclass

from flakehouse.quota.buckets import DatasetBuckets
from flakehouse.quota.v1 import quota_pb2


@dataclass(frozen=True)
class Usage:
    bytes: int
    rows: int


class Ledger:
    def __init__(self, burst_s: float) -> None:
        self._burst_s = burst_s
        self._quotas: dict[str, quota_pb2.Quota] = {}
        self._buckets: dict[str, DatasetBuckets] = {}
        self._usage: dict[tuple[str, str, int], Usage] = {}

    def quota(self, dataset: str) -> quota_pb2.Quota:
        """The dataset's limits; a dataset never configured is unlimited."""
        return self._quotas.get(dataset) or quota_pb2.Quota(dataset=dataset)

    def set_quota(self, quota: quota_pb2.Quota, now: float) -> None:
        self._quotas[quota.dataset] = quota
        self._buckets[quota.dataset] = DatasetBuckets.for_rates(
            quota.events_per_second, quota.bytes_per_second, self._burst_s, now
        )

    def try_acquire(self, dataset: str, events: int, size: int, now: float) -> float:
        """0 when granted, else the seconds to wait (nothing taken)."""
        buckets = self._buckets.get(dataset)
        return buckets.try_acquire(events, size, now) if buckets else 0.0

    def report(self, node_id: str, usage: list[quota_pb2.PartitionUsage]) -> None:
        """Replaces what one node holds: partitions it no longer reports are forgotten."""
        for key in [key for key in self._usage if key[0] == node_id]:
            del self._usage[key]
        for part in usage:
            self._usage[(node_id, part.dataset, part.partition)] = Usage(part.bytes, part.rows)

    def usage(self) -> dict[str, Usage]:
        totals: dict[str, Usage] = {}
        for (_, dataset, _), usage in self._usage.items():
            seen = totals.get(dataset, Usage(0, 0))
            totals[dataset] = Usage(seen.bytes + usage.bytes, seen.rows + usage.rows)
        return totals
