"""Rendezvous placement and the controller's versioning, without servers."""

from __future__ import annotations

from flakehouse.replication.assignment import Report, State
from flakehouse.replication.controller import Controller, assignments_of
from flakehouse.replication.membership import Membership
from flakehouse.replication.placement import (
    DatasetTopic,
    NodeInfo,
    compute_placement,
    moved_fraction,
    replicas_for,
)
from flakehouse.replication.v1 import replication_pb2

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


def test_generations_and_retired_datasets_are_in_the_placement() -> None:
    controller = Controller(Membership(node_timeout_s=10), 2)
    controller.membership.register("storage-0", "127.0.0.1:7000", "", now=0)
    ci_2 = DatasetTopic("ci", "flakehouse.ci.2", 4, generation=2)
    retired = [replication_pb2.RetiredDataset(dataset="old", generation=3)]
    assert controller.reconcile([ci_2], now=1, retired=retired)
    (dataset,) = controller.placement.datasets
    assert (dataset.topic, dataset.generation) == ("flakehouse.ci.2", 2)
    assert list(controller.placement.retired) == retired

    restarted = Controller(Membership(node_timeout_s=10), 2)
    restarted.restore(controller.placement, now=2)
    assert not restarted.reconcile([ci_2], now=3, retired=retired)


def test_a_change_of_retired_datasets_alone_is_a_new_version() -> None:
    controller = Controller(Membership(node_timeout_s=10), 2)
    assert controller.reconcile(TOPICS, now=1)
    version = controller.placement.version
    gone = replication_pb2.RetiredDataset(dataset="old", generation=1)
    assert controller.reconcile(None, now=2, retired=[gone])
    assert controller.placement.version == version + 1
    assert not controller.reconcile(None, now=3)  # None: the retired datasets stay as they are
    assert list(controller.placement.retired) == [gone]


def test_a_dataset_created_again_starts_its_replicas_afresh() -> None:
    membership = Membership(node_timeout_s=10)
    controller = Controller(membership, 1)
    membership.register("storage-0", "127.0.0.1:7000", "", now=0)
    ci = DatasetTopic("ci", "flakehouse.ci", 1)
    controller.reconcile([ci], now=1)
    membership.heartbeat("storage-0", {("ci", 0): report_online()}, now=2)
    controller.reconcile([ci], now=2)
    (partition,) = controller.placement.datasets[0].partitions
    assert [r.state.name for r in assignments_of(partition)] == ["ONLINE"]
    # The node has not reported on the new generation yet: its old replica's state does not
    # carry over to a topic it never read.
    membership.heartbeat("storage-0", {}, now=3)
    controller.reconcile([DatasetTopic("ci", "flakehouse.ci.2", 1, generation=2)], now=3)
    (partition,) = controller.placement.datasets[0].partitions
    assert [r.state.name for r in assignments_of(partition)] == ["BOOTSTRAPPING"]


def test_a_report_about_the_old_generation_says_nothing_about_the_new_one() -> None:
    membership = Membership(node_timeout_s=10)
    controller = Controller(membership, 1)
    membership.register("storage-0", "127.0.0.1:7000", "", now=0)
    ci_2 = DatasetTopic("ci", "flakehouse.ci.2", 1, generation=2)
    controller.reconcile([ci_2], now=1)
    # The node still holds (and reports) generation 1 until it takes the new placement.
    membership.heartbeat("storage-0", {("ci", 0): report_online(generation=1)}, now=2)
    controller.reconcile([ci_2], now=2)
    (partition,) = controller.placement.datasets[0].partitions
    assert [r.state.name for r in assignments_of(partition)] == ["BOOTSTRAPPING"]
    membership.heartbeat("storage-0", {("ci", 0): report_online(generation=2)}, now=3)
    controller.reconcile([ci_2], now=3)
    (partition,) = controller.placement.datasets[0].partitions
    assert [r.state.name for r in assignments_of(partition)] == ["ONLINE"]


def report_online(generation: int = 1) -> Report:
    return Report(State.ONLINE, applied_offset=5, end_offset=5, generation=generation)


def test_replica_statuses_join_the_placement_with_the_latest_reports() -> None:
    membership = Membership(node_timeout_s=10)
    controller = Controller(membership, 2)
    membership.register("storage-0", "127.0.0.1:7000", "", now=0)
    membership.register("storage-1", "127.0.0.1:7001", "", now=0)
    controller.reconcile([DatasetTopic("ci", "flakehouse.ci", 1)], now=1)
    report = Report(State.CATCHING_UP, applied_offset=3, end_offset=10)
    membership.heartbeat("storage-0", {("ci", 0): report}, now=2)
    # storage-1 stops heartbeating: dead at 11, and it never reported its replica.
    by_node = {s.node_id: s for s in controller.replica_statuses(now=11)}
    assert set(by_node) == {"storage-0", "storage-1"}
    reported, silent = by_node["storage-0"], by_node["storage-1"]
    assert (reported.applied_offset, reported.end_offset, reported.lag) == (3, 10, 7)
    assert reported.node_alive and reported.dataset == "ci" and reported.partition == 0
    assert (silent.applied_offset, silent.end_offset, silent.lag) == (-1, -1, -1)
    assert not silent.node_alive
    assert silent.state == replication_pb2.REPLICA_STATE_BOOTSTRAPPING
