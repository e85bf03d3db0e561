"""Rendezvous placement and the controller's versioning, without servers."""

from __future__ import annotations

from flakehouse.replication.controller import Controller
from flakehouse.replication.membership import Membership
from flakehouse.replication.placement import (
    DatasetTopic,
    NodeInfo,
    compute_placement,
    moved_fraction,
    replicas_for,
)

TOPICS = [
    DatasetTopic("ci", "flakehouse.ci", 64),
    DatasetTopic("nightly", "flakehouse.nightly", 64),
]


def nodes(n: int, zones: int = 0) -> list[NodeInfo]:
    return [NodeInfo(f"storage-{i}", f"z{i % zones}" if zones else "") for i in range(n)]


def test_every_partition_gets_two_distinct_nodes_and_load_is_spread() -> None:
    placement = compute_placement(TOPICS, nodes(4), 2)
    load: dict[str, int] = {}
    for partitions in placement.values():
        for replicas in partitions.values():
            assert len(replicas) == len(set(replicas)) == 2
            for node in replicas:
                load[node] = load.get(node, 0) + 1
    assert len(load) == 4
    assert max(load.values()) < 2 * min(load.values())


def test_fewer_nodes_than_replicas_gives_what_exists() -> None:
    assert replicas_for(nodes(1), "t", 0, 2) == ["storage-0"]
    assert replicas_for([], "t", 0, 2) == []


def test_a_joining_node_moves_only_its_share() -> None:
    before = compute_placement(TOPICS, nodes(4), 2)
    after = compute_placement(TOPICS, nodes(5), 2)
    moved = moved_fraction(before, after)
    # The fifth node should take about 1/5 of the replica slots; nothing else moves.
    assert 0.1 < moved < 0.3
    for dataset, partitions in before.items():
        for partition, replicas in partitions.items():
            gained = set(after[dataset][partition]) - set(replicas)
            assert gained <= {"storage-4"}, "a replica moved somewhere other than the new node"


def test_a_leaving_node_moves_only_its_own_replicas() -> None:
    before = compute_placement(TOPICS, nodes(5), 2)
    after = compute_placement(TOPICS, nodes(4), 2)
    for dataset, partitions in before.items():
        for partition, replicas in partitions.items():
            if "storage-4" not in replicas:
                assert after[dataset][partition] == replicas


def test_replicas_go_to_distinct_zones_when_known() -> None:
    zoned = nodes(6, zones=3)
    zone = {n.node_id: n.zone for n in zoned}
    for partition in range(100):
        replicas = replicas_for(zoned, "flakehouse.ci", partition, 2)
        assert zone[replicas[0]] != zone[replicas[1]]


def test_controller_bumps_version_only_on_change_and_restores_without_moving() -> None:
    membership = Membership(node_timeout_s=10)
    controller = Controller(membership, 2)
    for i in range(3):
        membership.register(f"storage-{i}", f"127.0.0.1:{7000 + i}", "", now=0)
    assert controller.reconcile(TOPICS, now=1)
    version = controller.placement.version
    assert not controller.reconcile(TOPICS, now=2)
    assert controller.placement.version == version

    # A node that stops heartbeating leaves the placement after the timeout.
    membership.heartbeat("storage-0", {}, now=11)
    membership.heartbeat("storage-1", {}, now=11)
    assert controller.reconcile(TOPICS, now=12)
    live = {r for d in controller.placement.datasets for p in d.partitions for r in p.replicas}
    assert live == {"storage-0", "storage-1"}

    restarted = Controller(Membership(node_timeout_s=10), 2)
    restarted.restore(controller.placement, now=100)
    assert not restarted.reconcile(TOPICS, now=101)
    assert restarted.placement == controller.placement


def test_heartbeat_from_unknown_node_asks_it_to_register() -> None:
    membership = Membership(node_timeout_s=10)
    assert not membership.heartbeat("storage-9", {}, now=0)
