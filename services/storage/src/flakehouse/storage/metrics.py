"""The storage node's Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from flakehouse.storage.replica import ApplyResult, Replica


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

    def applied(self, replica: Replica, result: ApplyResult) -> None:
        self.rows.labels(replica.dataset).inc(result.rows)
        self.duplicates.labels(replica.dataset).inc(result.duplicates)
        self.bad_records.inc(result.bad_records)
