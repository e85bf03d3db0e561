"""Per-link metrics, read from the pullers at each scrape (so a lag in seconds is as of the
scrape, and a removed link's series go with it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flakehouse.replication.puller import LinkPuller
from flakehouse.replication.v1 import replication_pb2

STATES = [
    name.removeprefix("LINK_STATE_").lower()
    for name, _ in replication_pb2.LinkState.items()
    if name != "LINK_STATE_UNSPECIFIED"
]


class LinkCollector(Collector):
    def __init__(self, pullers: Callable[[], list[LinkPuller]]) -> None:
        self._pullers = pullers

    def collect(self) -> Iterator[Metric]:
        labels = ["link", "dataset"]
        records = CounterMetricFamily(
            "flakehouse_link_records_pulled",
            "Records a link appended here (records of this cluster's own origin not counted).",
            labels=labels,
        )
        events = CounterMetricFamily(
            "flakehouse_link_events_pulled", "Events a link appended here.", labels=labels
        )
        errors = CounterMetricFamily(
            "flakehouse_link_errors", "Failed attempts of a link (each retried).", labels=labels
        )
        lag_records = GaugeMetricFamily(
            "flakehouse_link_lag_records",
            "Records the source holds beyond the link's checkpoint, as of its last word.",
            labels=labels,
        )
        lag_events = GaugeMetricFamily(
            "flakehouse_link_lag_events",
            "Estimated events behind: lag in records times the mean events per record.",
            labels=labels,
        )
        lag_seconds = GaugeMetricFamily(
            "flakehouse_link_lag_seconds",
            "Seconds since the link last had every record of its source (0 while it has).",
            labels=labels,
        )
        state = GaugeMetricFamily(
            "flakehouse_link_state", "1 for the link's current state.", labels=[*labels, "state"]
        )
        for puller in self._pullers():
            key = [puller.link.name, puller.link.dataset]
            records.add_metric(key, puller.records_pulled)
            events.add_metric(key, puller.events_pulled)
            errors.add_metric(key, puller.errors)
            lag_records.add_metric(key, puller.lag_records)
            lag_events.add_metric(key, puller.lag_events)
            lag_seconds.add_metric(key, puller.lag_seconds())
            current = replication_pb2.LinkState.Name(puller.state)  # type: ignore[arg-type]
            for name in STATES:
                state.add_metric([*key, name], float(current == "LINK_STATE_" + name.upper()))
        yield from (records, events, errors, lag_records, lag_events, lag_seconds, state)


def register_link_metrics(
    registry: CollectorRegistry, pullers: Callable[[], list[LinkPuller]]
) -> None:
    registry.register(LinkCollector(pullers))
