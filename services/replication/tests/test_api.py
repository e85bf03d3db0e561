"""The ReplicationService servicer on a real grpc.aio server with the production interceptors:
the controller and membership are the real (pure) ones, the catalog is a fake that the servicer's
`refresh` reads, and time is a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from prometheus_client import CollectorRegistry

from flakehouse.client.client import Client
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.core.settings import ServiceSettings
from flakehouse.replication.api import ReplicationApi
from flakehouse.replication.controller import Controller
from flakehouse.replication.membership import Membership
from flakehouse.replication.placement import DatasetTopic
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc
from tests import credentials

HEARTBEAT_S = 0.5
NODE_TIMEOUT_S = 10.0
ONLINE = replication_pb2.REPLICA_STATE_ONLINE


@dataclass
class Catalog:
    """The datasets the controller learns of when the servicer asks it to refresh."""

    controller: Controller
    clock: list[float]
    topics: list[DatasetTopic] = field(default_factory=list)
    refreshes: int = 0

    async def refresh(self) -> None:
        self.refreshes += 1
        self.controller.reconcile(self.topics, self.clock[0])


@dataclass
class Running:
    catalog: Catalog
    clock: list[float]
    stub: replication_pb2_grpc.ReplicationServiceAsyncStub
    client: Client

    async def register(self, node_id: str, address: str = "") -> replication_pb2.Placement:
        await self.stub.RegisterNode(
            replication_pb2.RegisterNodeRequest(
                node_id=node_id, address=address or f"{node_id}:7000", zone="z"
            )
        )
        return self.catalog.controller.placement


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    clock = [1000.0]
    controller = Controller(Membership(NODE_TIMEOUT_S), replication_factor=2)
    catalog = Catalog(controller, clock)
    api = ReplicationApi(controller, HEARTBEAT_S, catalog.refresh, clock=lambda: clock[0])
    server = GrpcServer(
        "replication",
        ServiceSettings(shutdown_grace_s=0, **credentials.tls_settings()),
        CollectorRegistry(),
        credentials.token_table(),
    )
    server.add(
        replication_pb2_grpc.add_ReplicationServiceServicer_to_server,
        api,
        service_name(replication_pb2.DESCRIPTOR, "ReplicationService"),
    )
    await server.start()
    channel = credentials.aio_channel(server.address)
    client = Client(replication=server.address, retries=0, timeout_s=30)
    try:
        yield Running(catalog, clock, replication_pb2_grpc.ReplicationServiceStub(channel), client)
    finally:
        client.close()
        await channel.close(None)
        await server.stop()


@pytest.mark.parametrize(
    "request_",
    [
        replication_pb2.RegisterNodeRequest(address="s0:7000"),
        replication_pb2.RegisterNodeRequest(node_id="s0"),
    ],
)
async def test_a_registration_without_id_or_address_is_invalid_argument(
    running: Running, request_: replication_pb2.RegisterNodeRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await running.stub.RegisterNode(request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "node_id and address are required"
    assert running.catalog.controller.membership.members() == []


async def test_registered_nodes_get_the_timings_and_the_datasets_replicas(
    running: Running,
) -> None:
    answer = await running.stub.RegisterNode(
        replication_pb2.RegisterNodeRequest(node_id="s0", address="s0:7000", zone="z")
    )
    assert (answer.heartbeat_interval_ms, answer.node_timeout_ms) == (500, 10_000)
    await running.register("s1")
    running.catalog.topics = [DatasetTopic("ci", "flakehouse.ci", 2, 1)]

    # A dataset the placement does not know yet: the servicer reads the catalog at once.
    got = await running.stub.GetPlacement(replication_pb2.GetPlacementRequest(dataset="ci"))
    placement = got.placement
    assert running.catalog.refreshes == 1
    assert [d.dataset for d in placement.datasets] == ["ci"]
    assert [(n.node_id, n.address, n.alive) for n in placement.nodes] == [
        ("s0", "s0:7000", True),
        ("s1", "s1:7000", True),
    ]
    for partition in placement.datasets[0].partitions:
        assert sorted(partition.replicas) == ["s0", "s1"]

    # Known now: no second catalog read; an unknown dataset is an empty answer, not an error.
    await running.stub.GetPlacement(replication_pb2.GetPlacementRequest(dataset="ci"))
    assert running.catalog.refreshes == 1
    other = await running.stub.GetPlacement(replication_pb2.GetPlacementRequest(dataset="nope"))
    assert list(other.placement.datasets) == [] and running.catalog.refreshes == 2
    everything = await running.stub.GetPlacement(replication_pb2.GetPlacementRequest())
    assert everything.placement == running.catalog.controller.placement


async def test_a_heartbeat_from_an_unknown_node_asks_it_to_register_again(
    running: Running,
) -> None:
    unknown = await running.stub.Heartbeat(replication_pb2.HeartbeatRequest(node_id="s9"))
    assert unknown.reregister
    placement = await running.register("s0")
    known = await running.stub.Heartbeat(replication_pb2.HeartbeatRequest(node_id="s0"))
    assert not known.reregister and known.placement_version == placement.version


async def test_the_watch_sends_the_placement_then_every_change(running: Running) -> None:
    first = await running.register("s0")
    stream = running.stub.WatchPlacement(replication_pb2.WatchPlacementRequest())
    try:
        initial = await asyncio.wait_for(stream.read(), 10)
        assert initial.placement == first
        changed = await running.register("s1")
        assert changed.version == first.version + 1
        update = await asyncio.wait_for(stream.read(), 10)
        assert update.placement == changed
    finally:
        stream.cancel()


async def test_replica_status_has_each_replicas_offsets_and_its_nodes_liveness(
    running: Running,
) -> None:
    await running.register("s0")
    await running.register("s1")
    running.catalog.topics = [DatasetTopic("ci", "flakehouse.ci", 1, 1)]
    await running.catalog.refresh()
    report = replication_pb2.ReplicaReport(
        dataset="ci", partition=0, applied_offset=40, end_offset=50, state=ONLINE, generation=1
    )
    await running.stub.Heartbeat(replication_pb2.HeartbeatRequest(node_id="s0", replicas=[report]))

    status = await asyncio.to_thread(running.client.status)
    assert status.replication_factor == 2
    by_node = {r.node_id: r for r in status.replicas}
    assert sorted(by_node) == ["s0", "s1"]
    s0, s1 = by_node["s0"], by_node["s1"]
    assert (s0.dataset, s0.partition, s0.applied_offset, s0.end_offset, s0.lag) == (
        "ci",
        0,
        40,
        50,
        10,
    )
    assert (s1.applied_offset, s1.end_offset, s1.lag) == (-1, -1, -1)  # it said nothing yet
    assert s0.node_alive and s1.node_alive

    # s1 stays silent past the node timeout; s0 keeps heartbeating.
    running.clock[0] += NODE_TIMEOUT_S + 1
    await running.stub.Heartbeat(replication_pb2.HeartbeatRequest(node_id="s0", replicas=[report]))
    later = await asyncio.to_thread(running.client.status)
    alive = {r.node_id: r.node_alive for r in later.replicas}
    assert alive == {"s0": True, "s1": False}
