"""Ingest's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.uploads = Counter(
            "flakehouse_ingest_uploads_total",
            "Uploads, by format and outcome.",
            ["format", "outcome"],
            registry=registry,
        )
        self.events = Counter(
            "flakehouse_ingest_events_total",
            "Events acknowledged by Kafka.",
            registry=registry,
        )
        self.records_produced = Counter(
            "flakehouse_ingest_records_produced_total",
            "Kafka records (event batches) acknowledged.",
            registry=registry,
        )
        self.bytes = Counter(
            "flakehouse_ingest_bytes_total", "Upload bytes received.", registry=registry
        )
        self.rejections = Counter(
            "flakehouse_ingest_rejections_total",
            "Uploads refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.produce_latency = Histogram(
            "flakehouse_ingest_produce_duration_seconds",
            "Time from the first send of an upload to Kafka's last acknowledgement.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "flakehouse_ingest_uploads_in_flight",
            "Uploads holding a slot (receiving, parsing or producing).",
            registry=registry,
        )
        self.resumed = Counter(
            "flakehouse_ingest_uploads_resumed_total",
            "Upload streams that continued a resumable upload from bytes already spooled.",
            registry=registry,
        )
        self.resumed_bytes = Counter(
            "flakehouse_ingest_resumed_bytes_total",
            "Bytes that resumed uploads did not have to send again.",
            registry=registry,
        )
        self.quota_unchecked = Counter(
            "flakehouse_ingest_quota_unchecked_total",
            "Uploads let through because the quota service could not be reached.",
            registry=registry,
        )
