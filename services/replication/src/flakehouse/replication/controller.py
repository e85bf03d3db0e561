"""The controller's state machine: membership and topics in, a versioned placement out, with a
broadcast to watchers on every change. No gRPC and no Kafka here; the app feeds it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from flakehouse.replication.membership import Membership
from flakehouse.replication.placement import DatasetTopic, NodeInfo, compute_placement
from flakehouse.replication.v1 import replication_pb2


class Controller:
    def __init__(self, membership: Membership, replication_factor: int) -> None:
        self.membership = membership
        self.replication_factor = replication_factor
        self.topics: list[DatasetTopic] = []
        self.placement = replication_pb2.Placement(replication_factor=replication_factor)
        self._changed = asyncio.Event()

    def restore(self, saved: replication_pb2.Placement, now: float) -> None:
        """Takes over a placement persisted by a previous controller. Its nodes count as alive
        until they miss heartbeats, so a controller restart moves nothing."""
        self.placement = saved
        self.topics = [DatasetTopic(d.dataset, d.topic, len(d.partitions)) for d in saved.datasets]
        # Dead nodes are restored as dead (last seen beyond the timeout), not forgotten, so the
        # node list is unchanged too.
        dead_since = now - self.membership.node_timeout_s - 1
        for node in saved.nodes:
            seen = now if node.alive else dead_since
            self.membership.register(node.node_id, node.address, node.zone, seen)

    def reconcile(self, topics: Sequence[DatasetTopic] | None, now: float) -> bool:
        """Recomputes the placement; True (and watchers woken) when it changed."""
        if topics is not None:
            self.topics = sorted(topics, key=lambda t: t.dataset)
        live = self.membership.live_members(now)
        assignment = compute_placement(
            self.topics, [NodeInfo(m.node_id, m.zone) for m in live], self.replication_factor
        )
        alive = {m.node_id for m in live}
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
                    partitions=[
                        replication_pb2.PartitionPlacement(partition=p, replicas=replicas)
                        for p, replicas in sorted(assignment[t.dataset].items())
                    ],
                )
                for t in self.topics
            ],
        )
        if candidate == self.placement:
            return False
        candidate.version = self.placement.version + 1
        self.placement = candidate
        self._changed.set()
        self._changed = asyncio.Event()
        return True

    async def wait_for_change(self, after_version: int) -> replication_pb2.Placement:
        while self.placement.version <= after_version:
            await self._changed.wait()
        return self.placement
