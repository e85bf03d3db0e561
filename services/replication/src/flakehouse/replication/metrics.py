"""The replication controller's Prometheus metrics: the placement's version and health, and
what storage nodes last reported of their replicas. Its RPC rate and latency come from the
shared interceptor."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge

from flakehouse.replication.assignment import State
from flakehouse.replication.controller import replica_health
from flakehouse.replication.membership import Member
from flakehouse.replication.v1 import replication_pb2


class ReplicationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._version = Gauge(
            "flakehouse_replication_placement_version",
            "Version of the placement.",
            registry=registry,
        )
        self._live_nodes = Gauge(
            "flakehouse_replication_live_nodes",
            "Storage nodes that heartbeat in time.",
            registry=registry,
        )
        self._under_replicated = Gauge(
            "flakehouse_replication_under_replicated_partitions",
            "Partitions with fewer serving (online or draining) replicas than the replication"
            " factor.",
            registry=registry,
        )
        self._offline = Gauge(
            "flakehouse_replication_offline_partitions",
            "Partitions without any serving replica: queries answer them as missing.",
            registry=registry,
        )
        self._replicas = Gauge(
            "flakehouse_replication_replicas",
            "Replicas by state.",
            ["state"],
            registry=registry,
        )
        self._lag = Gauge(
            "flakehouse_replication_replica_lag_records",
            "Records between a partition's end and what a replica applied, as last reported.",
            ["dataset", "partition", "node"],
            registry=registry,
        )
        self._bootstrap_bytes = Gauge(
            "flakehouse_replication_bootstrap_bytes",
            "Bytes copied from peers to bootstrap the replicas currently assigned, as reported.",
            registry=registry,
        )

    def observe(self, placement: replication_pb2.Placement, members: Iterable[Member]) -> None:
        """Sets every gauge from the placement and the members' latest reports; the lag series
        of replicas no longer reported are removed."""
        self._version.set(placement.version)
        self._live_nodes.set(sum(1 for n in placement.nodes if n.alive))
        health = replica_health(placement)
        self._under_replicated.set(health.under_replicated)
        self._offline.set(health.offline)
        # Every state, so that one no replica is in any more reads 0, not its last count.
        for state in State:
            self._replicas.labels(state.value).set(health.by_state.get(state, 0))
        self._lag.clear()
        copied = 0
        for member in members:
            for (dataset, partition), report in member.replicas.items():
                self._lag.labels(dataset, str(partition), member.node_id).set(report.lag)
                copied += report.bootstrap_bytes
        self._bootstrap_bytes.set(copied)
