"""Gauges from usage views: only limits that are set, and series of what is gone removed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from flakehouse.quota.metrics import QuotaMetrics, gauge_values
from flakehouse.quota.usage import Totals, UsageView
from flakehouse.quota.v1 import quota_pb2


def view(dataset: str, **quota: float) -> UsageView:
    return UsageView(
        dataset=dataset,
        totals=Totals(bytes=50, rows=5),
        events_per_second=2.0,
        bytes_per_second=0.0,
        cutoff=quota_pb2.Cutoff(cutoff_us=3_000_000),
        quota=quota_pb2.Quota(dataset=dataset, **quota),  # type: ignore[arg-type]
        running_queries=1,
    )


def test_gauge_values() -> None:
    values = gauge_values(
        [view("ci", max_stored_bytes=100, events_per_second=4, retention_seconds=60)]
    )
    assert values["stored_bytes"] == {("ci",): 50}
    assert values["limit"] == {
        ("ci", "max_stored_bytes"): 100,
        ("ci", "events_per_second"): 4,
        ("ci", "retention_seconds"): 60,
    }
    assert values["usage_ratio"] == {
        ("ci", "max_stored_bytes"): 0.5,
        ("ci", "events_per_second"): 0.5,
    }
    assert values["cutoff"] == {("ci",): 3.0}


def test_series_of_datasets_gone_are_removed() -> None:
    registry = CollectorRegistry()
    metrics = QuotaMetrics(registry)
    metrics.show([view("a", max_concurrent_queries=2), view("b", max_concurrent_queries=4)])
    ratio = "flakehouse_quota_usage_ratio"
    labels = {"dataset": "a", "limit": "max_concurrent_queries"}
    assert registry.get_sample_value(ratio, labels) == 0.5
    metrics.show([view("b")])
    assert registry.get_sample_value(ratio, labels) is None
    assert registry.get_sample_value("flakehouse_quota_stored_bytes", {"dataset": "a"}) is None
    assert registry.get_sample_value("flakehouse_quota_stored_bytes", {"dataset": "b"}) == 50
    assert registry.get_sample_value("flakehouse_quota_limit", {**labels, "dataset": "b"}) is None
