"""The quota service's Prometheus metrics: usage against each limit, cutoffs and refusals."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from flakehouse.core.limit_rules import QUOTA_FIELDS
from flakehouse.quota.usage import UsageView

Labels = tuple[str, ...]


def gauge_values(views: Sequence[UsageView]) -> dict[str, dict[Labels, float]]:
    """The value of every gauge series, by gauge name and labels. Limits of 0 (unlimited) have
    no series, so a dashboard shows only what is limited."""
    stored: dict[Labels, float] = {}
    limits: dict[Labels, float] = {}
    ratios: dict[Labels, float] = {}
    cutoffs: dict[Labels, float] = {}
    for view in views:
        name = view.dataset
        stored[(name,)] = view.totals.bytes
        if view.cutoff.cutoff_us > 0:
            cutoffs[(name,)] = view.cutoff.cutoff_us / 1e6
        used = {
            "max_stored_bytes": float(view.totals.bytes),
            "events_per_second": view.events_per_second,
            "bytes_per_second": view.bytes_per_second,
            "max_concurrent_queries": float(view.running_queries),
        }
        for field in QUOTA_FIELDS:
            limit = float(getattr(view.quota, field))
            if not limit:
                continue
            limits[(name, field)] = limit
            if field in used:
                ratios[(name, field)] = used[field] / limit
    return {
        "stored_bytes": stored,
        "limit": limits,
        "usage_ratio": ratios,
        "cutoff": cutoffs,
    }


class QuotaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.leases = Counter(
            "flakehouse_quota_leases_total",
            "Lease requests, by dataset and whether they were granted.",
            ["dataset", "result"],
            registry=registry,
        )
        self.refusals = Counter(
            "flakehouse_quota_refusals_total",
            "Requests refused past a limit, by dataset and kind (ingest_rate, query_concurrency).",
            ["dataset", "kind"],
            registry=registry,
        )
        self._gauges = {
            "stored_bytes": Gauge(
                "flakehouse_quota_stored_bytes",
                "Bytes held in sealed segments, one replica's worth (what max_stored_bytes "
                "counts), by dataset.",
                ["dataset"],
                registry=registry,
            ),
            "limit": Gauge(
                "flakehouse_quota_limit",
                "Each limit that is set (not 0), in its own unit, by dataset and limit.",
                ["dataset", "limit"],
                registry=registry,
            ),
            "usage_ratio": Gauge(
                "flakehouse_quota_usage_ratio",
                "Usage divided by the limit (1: at the limit), by dataset and limit.",
                ["dataset", "limit"],
                registry=registry,
            ),
            "cutoff": Gauge(
                "flakehouse_quota_cutoff_timestamp_seconds",
                "The dataset's cutoff: older events are not answered and may be deleted.",
                ["dataset"],
                registry=registry,
            ),
        }
        self._shown: dict[str, set[Labels]] = {name: set() for name in self._gauges}

    def show(self, views: Sequence[UsageView]) -> None:
        """Sets every gauge from the views, and removes the series of datasets and limits that
        are gone."""
        for name, values in gauge_values(views).items():
            gauge = self._gauges[name]
            for labels in self._shown[name] - values.keys():
                gauge.remove(*labels)
            for labels, value in values.items():
                gauge.labels(*labels).set(value)
            self._shown[name] = set(values)
