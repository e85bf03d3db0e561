"""Every dataset's limits and floor, the generation of the dataset they belong to, and the token
buckets of its ingest rates. Pure: persistence and time come from outside."""

from __future__ import annotations

from dataclasses import dataclass

from flakehouse.quota.buckets import DatasetBuckets
from flakehouse.quota.limits import has_effect
from flakehouse.quota.v1 import quota_pb2


@dataclass(frozen=True)
class Entry:
    limits: quota_pb2.DatasetLimits
    generation: int


class Ledger:
    def __init__(self, burst_s: float) -> None:
        self._burst_s = burst_s
        self._entries: dict[str, Entry] = {}
        self._buckets: dict[str, DatasetBuckets] = {}

    def get(self, dataset: str) -> Entry | None:
        return self._entries.get(dataset)

    def limits(self, dataset: str) -> quota_pb2.DatasetLimits | None:
        entry = self._entries.get(dataset)
        return entry.limits if entry else None

    def quota(self, dataset: str) -> quota_pb2.Quota:
        """The dataset's limits; a dataset never configured is unlimited."""
        entry = self._entries.get(dataset)
        return entry.limits.quota if entry else quota_pb2.Quota(dataset=dataset)

    def datasets(self) -> list[str]:
        return sorted(self._entries)

    def put(self, limits: quota_pb2.DatasetLimits, generation: int, now: float) -> None:
        dataset = limits.quota.dataset
        old = self._entries.get(dataset)
        self._entries[dataset] = Entry(limits, generation)
        # Buckets start full: rebuilt only when a rate changes, so that moving a floor or
        # another limit does not hand out a fresh burst.
        rates = (limits.quota.events_per_second, limits.quota.bytes_per_second)
        if (
            old is None
            or dataset not in self._buckets
            or (old.limits.quota.events_per_second, old.limits.quota.bytes_per_second) != rates
        ):
            self._buckets[dataset] = DatasetBuckets.for_rates(*rates, self._burst_s, now)

    def remove(self, dataset: str) -> None:
        self._entries.pop(dataset, None)
        self._buckets.pop(dataset, None)

    def published(self) -> list[quota_pb2.DatasetLimits]:
        """Every dataset with a limit or a floor, by name: what WatchLimits sends."""
        return [
            entry.limits for _, entry in sorted(self._entries.items()) if has_effect(entry.limits)
        ]

    def try_acquire(self, dataset: str, events: int, size: int, now: float) -> float:
        """0 when granted, else the seconds to wait (nothing taken)."""
        buckets = self._buckets.get(dataset)
        return buckets.try_acquire(events, size, now) if buckets else 0.0
