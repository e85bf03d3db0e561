"""The controller's gauges, set from a placement and the members' reports, without servers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from flakehouse.replication.assignment import Report, State
from flakehouse.replication.controller import Controller
from flakehouse.replication.membership import Membership
from flakehouse.replication.metrics import ReplicationMetrics
from flakehouse.replication.placement import DatasetTopic


def test_gauges_follow_the_placement_and_the_latest_reports() -> None:
    registry = CollectorRegistry()
    metrics = ReplicationMetrics(registry)
    membership = Membership(node_timeout_s=10)
    controller = Controller(membership, 2)
    membership.register("storage-0", "127.0.0.1:7000", "", now=0)
    controller.reconcile([DatasetTopic("ci", "flakehouse.ci", 2)], now=1)
    report = Report(State.CATCHING_UP, applied_offset=3, end_offset=10, bootstrap_bytes=100)
    membership.heartbeat("storage-0", {("ci", 1): report}, now=2)
    metrics.observe(controller.placement, membership.members())

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("flakehouse_replication_placement_version") == controller.placement.version
    assert value("flakehouse_replication_live_nodes") == 1
    # One node for a replication factor of 2: both partitions are under-replicated, and their
    # replicas are still bootstrapping (not serving), so both are offline too.
    assert value("flakehouse_replication_under_replicated_partitions") == 2
    assert value("flakehouse_replication_offline_partitions") == 2
    assert value("flakehouse_replication_replicas", state="bootstrapping") == 2
    lag = "flakehouse_replication_replica_lag_records"
    assert value(lag, dataset="ci", partition="1", node="storage-0") == 7
    assert value("flakehouse_replication_bootstrap_bytes") == 100

    membership.heartbeat("storage-0", {}, now=3)
    metrics.observe(controller.placement, membership.members())
    assert value(lag, dataset="ci", partition="1", node="storage-0") is None
    assert value("flakehouse_replication_bootstrap_bytes") == 0

    # The node stops heartbeating: its replicas count in no state any more, so the bootstrapping
    # count drops to 0 instead of staying at its last value.
    controller.reconcile([DatasetTopic("ci", "flakehouse.ci", 2)], now=60)
    metrics.observe(controller.placement, membership.members())
    assert value("flakehouse_replication_live_nodes") == 0
    assert value("flakehouse_replication_replicas", state="bootstrapping") == 0
