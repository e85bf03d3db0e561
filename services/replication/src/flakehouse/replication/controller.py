"""The controller's state machine: membership and the catalog's datasets in, a versioned placement
out, with a broadcast to watchers on every change. No gRPC and no Kafka here; the app feeds it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from flakehouse.replication.assignment import (
    Replica,
    Report,
    State,
    next_replicas,
    serving_count,
)
from flakehouse.replication.membership import Membership
from flakehouse.replication.placement import DatasetTopic, NodeInfo, compute_placement
from flakehouse.replication.v1 import replication_pb2

STATE_OF: dict[replication_pb2.ReplicaState.ValueType, State] = {
    replication_pb2.REPLICA_STATE_BOOTSTRAPPING: State.BOOTSTRAPPING,
    replication_pb2.REPLICA_STATE_CATCHING_UP: State.CATCHING_UP,
    replication_pb2.REPLICA_STATE_ONLINE: State.ONLINE,
    replication_pb2.REPLICA_STATE_DRAINING: State.DRAINING,
}
PROTO_STATE: dict[State, replication_pb2.ReplicaState.ValueType] = {
    state: proto for proto, state in STATE_OF.items()
}


def assignments_of(partition: replication_pb2.PartitionPlacement) -> list[Replica]:
    """A partition's replicas with their states; a placement written before states existed
    (only `replicas`) counts them online."""
    if partition.assignments:
        return [
            Replica(a.node_id, STATE_OF.get(a.state, State.BOOTSTRAPPING))
            for a in partition.assignments
        ]
    return [Replica(node_id, State.ONLINE) for node_id in partition.replicas]


def report_of(report: replication_pb2.ReplicaReport) -> Report:
    state = STATE_OF.get(report.state, State.CATCHING_UP)
    return Report(
        state,
        report.applied_offset,
        report.end_offset,
        report.bootstrap_bytes,
        report.generation or 1,
    )


@dataclass(frozen=True)
class Health:
    under_replicated: int
    offline: int
    by_state: Counter[State]


def replica_health(placement: replication_pb2.Placement) -> Health:
    """Partitions with fewer serving replicas than the replication factor (under-replicated)
    and with none (offline), and replicas by state; replicas on dead nodes do not serve."""
    alive = {n.node_id for n in placement.nodes if n.alive}
    under = offline = 0
    states: Counter[State] = Counter()
    for dataset in placement.datasets:
        for partition in dataset.partitions:
            replicas = [r for r in assignments_of(partition) if r.node_id in alive]
            serving = serving_count(replicas)
            under += serving < placement.replication_factor
            offline += serving == 0
            states.update(r.state for r in replicas)
    return Health(under, offline, states)


class Controller:
    def __init__(self, membership: Membership, replication_factor: int) -> None:
        self.membership = membership
        self.replication_factor = replication_factor
        self.topics: list[DatasetTopic] = []
        self.retired: list[replication_pb2.RetiredDataset] = []
        self.placement = replication_pb2.Placement(replication_factor=replication_factor)
        self._changed = asyncio.Event()

    def restore(self, saved: replication_pb2.Placement, now: float) -> None:
        """Takes over a placement persisted by a previous controller. Its nodes count as alive
        until they miss heartbeats, so a controller restart moves nothing."""
        self.placement = saved
        self.topics = [
            DatasetTopic(d.dataset, d.topic, len(d.partitions), d.generation)
            for d in saved.datasets
        ]
        self.retired = list(saved.retired)
        # Dead nodes are restored as dead (last seen beyond the timeout), not forgotten, so the
        # node list is unchanged too.
        dead_since = now - self.membership.node_timeout_s - 1
        for node in saved.nodes:
            seen = now if node.alive else dead_since
            self.membership.register(node.node_id, node.address, node.zone, seen)

    def reconcile(
        self,
        topics: Sequence[DatasetTopic] | None,
        now: float,
        retired: Sequence[replication_pb2.RetiredDataset] | None = None,
    ) -> bool:
        """Recomputes the placement from the live datasets' topics and the retired datasets
        (None: as before); True (and watchers woken) when it changed, be it only `retired`."""
        if topics is not None:
            self.topics = sorted(topics, key=lambda t: t.dataset)
        if retired is not None:
            self.retired = sorted(retired, key=lambda r: (r.dataset, r.generation))
        live = self.membership.live_members(now)
        target = compute_placement(
            self.topics, [NodeInfo(m.node_id, m.zone) for m in live], self.replication_factor
        )
        alive = {m.node_id for m in live}
        # A dataset deleted and created again has a new topic: its replicas start afresh.
        topic_of = {t.dataset: t.topic for t in self.topics}
        generation_of = {t.dataset: t.generation or 1 for t in self.topics}
        current = {
            (d.dataset, p.partition): assignments_of(p)
            for d in self.placement.datasets
            if topic_of.get(d.dataset) == d.topic
            for p in d.partitions
        }
        reports = [(m.node_id, m.replicas) for m in live]

        def step(dataset: str, partition: int, wanted: list[str]) -> list[Replica]:
            key = (dataset, partition)
            # A report about the old incarnation of a name says nothing about the new one.
            said = {
                node_id: held[key]
                for node_id, held in reports
                if key in held and held[key].generation == generation_of[dataset]
            }
            return next_replicas(current.get(key, []), wanted, alive, said)

        candidate = replication_pb2.Placement(
            version=self.placement.version,
            replication_factor=self.replication_factor,
            nodes=[
                replication_pb2.Node(
                    node_id=m.node_id, address=m.address, zone=m.zone, alive=m.node_id in alive
                )
                for m in self.membership.members()
            ],
            datasets=[
                replication_pb2.DatasetPlacement(
                    dataset=t.dataset,
                    topic=t.topic,
                    generation=t.generation,
                    partitions=[
                        _partition_placement(p, step(t.dataset, p, wanted))
                        for p, wanted in sorted(target[t.dataset].items())
                    ],
                )
                for t in self.topics
            ],
            retired=self.retired,
        )
        if candidate == self.placement:
            return False
        candidate.version = self.placement.version + 1
        self.placement = candidate
        self._changed.set()
        self._changed = asyncio.Event()
        return True

    def replica_statuses(self, now: float) -> list[replication_pb2.ReplicaStatus]:
        """Every assigned replica with what its node last reported of it (offsets -1 when it
        reported nothing) and whether the node is alive, in the placement's order."""
        members = {m.node_id: m for m in self.membership.members()}
        statuses = []
        for dataset in self.placement.datasets:
            for partition in dataset.partitions:
                key = (dataset.dataset, partition.partition)
                for replica in assignments_of(partition):
                    node_id = replica.node_id
                    member = members.get(node_id)
                    report = member.replicas.get(key) if member else None
                    applied, end = (
                        (report.applied_offset, report.end_offset) if report else (-1, -1)
                    )
                    statuses.append(
                        replication_pb2.ReplicaStatus(
                            dataset=dataset.dataset,
                            partition=partition.partition,
                            node_id=node_id,
                            applied_offset=applied,
                            end_offset=end,
                            lag=report.lag if report else -1,
                            node_alive=self.membership.alive(node_id, now),
                            state=PROTO_STATE[replica.state],
                        )
                    )
        return statuses

    async def wait_for_change(self, after_version: int) -> replication_pb2.Placement:
        while self.placement.version <= after_version:
            await self._changed.wait()
        return self.placement


def _partition_placement(
    partition: int, replicas: list[Replica]
) -> replication_pb2.PartitionPlacement:
    return replication_pb2.PartitionPlacement(
        partition=partition,
        replicas=[r.node_id for r in replicas],
        assignments=[
            replication_pb2.ReplicaAssignment(node_id=r.node_id, state=PROTO_STATE[r.state])
            for r in replicas
        ],
    )
