"""The query service's Prometheus metrics. Its RPC rate and latency come from the shared
interceptor: flakehouse_query_grpc_requests_total and
flakehouse_query_grpc_request_duration_seconds."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from flakehouse.common.v1 import plan_pb2


class QueryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.answers = Counter(
            "flakehouse_query_answers_total",
            "Queries answered, by dataset and whether the answer was complete or partial.",
            ["dataset", "answer"],
            registry=registry,
        )
        self.missing_partitions = Counter(
            "flakehouse_query_missing_partitions_total",
            "Partitions left out of answers because no replica answered in time.",
            ["dataset"],
            registry=registry,
        )
        self.hedged = Counter(
            "flakehouse_query_hedged_total",
            "Partition calls for which a second replica was asked because the first was slow.",
            registry=registry,
        )
        self.rows_scanned = Counter(
            "flakehouse_query_rows_scanned_total",
            "Rows read by storage nodes for queries.",
            ["dataset"],
            registry=registry,
        )

        self.refusals = Counter(
            "flakehouse_query_refusals_total",
            "Queries refused by a dataset's limits, by dataset and reason (concurrency).",
            ["dataset", "reason"],
            registry=registry,
        )
        self.limits_unchecked = Counter(
            "flakehouse_query_limits_unchecked_total",
            "Queries run without their concurrency limit checked: the quota service could not "
            "be reached.",
            ["dataset"],
            registry=registry,
        )

    def answered(self, dataset: str, missing: int, hedged: int, scan: plan_pb2.ScanStats) -> None:
        self.answers.labels(dataset, "partial" if missing else "complete").inc()
        if missing:
            self.missing_partitions.labels(dataset).inc(missing)
        if hedged:
            self.hedged.inc(hedged)
        self.rows_scanned.labels(dataset).inc(scan.rows_scanned)
