"""The storage node's Prometheus metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from flakehouse.quota.v1 import quota_pb2
from flakehouse.storage.v1 import storage_pb2

if TYPE_CHECKING:
    from flakehouse.storage.replica import ApplyResult, Replica

_DROP_REASONS: dict[int, str] = {
    quota_pb2.CUTOFF_REASON_RETENTION: "retention",
    quota_pb2.CUTOFF_REASON_STORED_BYTES: "stored_bytes",
}


def drop_reason(reason: int) -> str:
    """The `reason` label of a DropBound's CutoffReason."""
    return _DROP_REASONS.get(reason, "unspecified")


class StorageMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "flakehouse_storage_rows_applied_total",
            "Events applied.",
            ["dataset"],
            registry=registry,
        )
        self.duplicates = Counter(
            "flakehouse_storage_duplicates_dropped_total",
            "Events dropped because their id was already applied.",
            ["dataset"],
            registry=registry,
        )
        self.bad_records = Counter(
            "flakehouse_storage_bad_records_total",
            "Kafka records that could not be decoded.",
            registry=registry,
        )
        self.segments_sealed = Counter(
            "flakehouse_storage_segments_sealed_total",
            "Segments written to RocksDB.",
            registry=registry,
        )
        self.segments_merged = Counter(
            "flakehouse_storage_segments_merged_total",
            "Small sealed segments merged into larger ones by compaction.",
            registry=registry,
        )
        self.lag = Gauge(
            "flakehouse_storage_partition_lag_records",
            "Records between the partition's end and what this node applied.",
            ["dataset", "partition"],
            registry=registry,
        )
        self.bootstrap_bytes = Counter(
            "flakehouse_storage_bootstrap_bytes_total",
            "Bytes of sealed segments copied from peers to bootstrap (repair) replicas.",
            registry=registry,
        )
        self.broker_behind = Counter(
            "flakehouse_storage_broker_behind_total",
            "Partitions whose broker end offset fell below the applied offset.",
            registry=registry,
        )
        self.stored_bytes = Gauge(
            "flakehouse_storage_stored_bytes",
            "Bytes of sealed segments.",
            ["dataset"],
            registry=registry,
        )
        self.stored_rows = Gauge(
            "flakehouse_storage_stored_rows",
            "Rows held (sealed and open).",
            ["dataset"],
            registry=registry,
        )
        self.dropped_segments = Counter(
            "flakehouse_storage_dropped_segments_total",
            "Sealed segments deleted because every event in them is below the dataset's cutoff.",
            ["dataset", "reason"],
            registry=registry,
        )
        self.dropped_rows = Counter(
            "flakehouse_storage_dropped_rows_total",
            "Rows of the sealed segments deleted below the dataset's cutoff.",
            ["dataset", "reason"],
            registry=registry,
        )
        self.drop_behind_seconds = Gauge(
            "flakehouse_storage_drop_behind_seconds",
            "Before each drop round, how far below the drop bound the newest event of the "
            "oldest sealed segment is: the backlog the round faces, 0 when no segment is below "
            "the bound; it grows while drops fail.",
            ["dataset"],
            registry=registry,
        )
        self._behind_datasets: set[str] = set()

    def applied(self, replica: Replica, result: ApplyResult) -> None:
        self.rows.labels(replica.dataset).inc(result.rows)
        self.duplicates.labels(replica.dataset).inc(result.duplicates)
        self.bad_records.inc(result.bad_records)

    def usage(self, partitions: Iterable[quota_pb2.PartitionUsage]) -> None:
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for usage in partitions:
            totals[usage.dataset][0] += usage.bytes
            totals[usage.dataset][1] += usage.rows
        for dataset, (size, rows) in totals.items():
            self.stored_bytes.labels(dataset).set(size)
            self.stored_rows.labels(dataset).set(rows)

    def dropped(self, dataset: str, reason: int, metas: Iterable[storage_pb2.Segment]) -> None:
        label = drop_reason(reason)
        metas = list(metas)
        self.dropped_segments.labels(dataset, label).inc(len(metas))
        self.dropped_rows.labels(dataset, label).inc(sum(m.row_count for m in metas))

    def drop_behind(self, behind_us: Mapping[str, int]) -> None:
        """Per dataset with a drop bound; a dataset that no longer has one loses its series."""
        for dataset in self._behind_datasets - set(behind_us):
            self.drop_behind_seconds.remove(dataset)
        for dataset, micros in behind_us.items():
            self.drop_behind_seconds.labels(dataset).set(micros / 1e6)
        self._behind_datasets = set(behind_us)
