"""The console's Prometheus metrics: flakehouse_console_*."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "flakehouse_console_requests_total",
            "HTTP requests by route and status code.",
            ["route", "code"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "flakehouse_console_request_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.queries = Counter(
            "flakehouse_console_queries_total",
            "Queries asked through the console (page and API), by outcome: ok, partial, or the "
            "error's status.",
            ["outcome"],
            registry=registry,
        )
        self.sign_ins = Counter(
            "flakehouse_console_sign_ins_total",
            "Sign-in attempts, by outcome: ok or the refusal's status.",
            ["outcome"],
            registry=registry,
        )
