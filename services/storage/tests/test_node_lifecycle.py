"""A storage node against the real broker through a dataset's life: each generation of a name on
its own topic, the data of a deleted dataset deleted (also at start), a dataset absent from the
placement kept, a new replica never seeded with a deleted dataset's segments, and usage reports
with the drops that follow them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.common.v1 import plan_pb2
from flakehouse.core.kafka import KafkaAdmin, KafkaConnection, make_consumer, make_producer
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.core.settings import ServiceSettings
from flakehouse.events.batch import encode_batches
from flakehouse.quota.v1 import quota_pb2
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage import fragment
from flakehouse.storage.api import StorageApi
from flakehouse.storage.bootstrap import Peer, Transfer, fetch_segments
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.metrics import StorageMetrics
from flakehouse.storage.node import StorageNode
from flakehouse.storage.replica import SealPolicy
from flakehouse.storage.store import SegmentStore
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc
from tests import credentials
from tests.support import eventually_async

pytestmark = [pytest.mark.processes, pytest.mark.broker]
HOUR_US = 3_600_000_000
BASE_US = 1_700_000_000_000_000
ONLINE = replication_pb2.REPLICA_STATE_ONLINE
BOOTSTRAPPING = replication_pb2.REPLICA_STATE_BOOTSTRAPPING
COUNT = plan_pb2.QueryPlan(
    ir_version=1,
    dataset="ci",
    aggregates=[plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)],
)


def records(upload: str, events: int, hour: int = 0) -> list[bytes]:
    rows = [
        {"timestamp": BASE_US + hour * HOUR_US + i, "status": "passed", "n": i}
        for i in range(events)
    ]
    return [
        b.SerializeToString()
        for b in encode_batches(rows, dataset="ci", upload_id=upload, max_rows=100)
    ]


async def produce(bootstrap: str, topic: str, payloads: list[bytes], partitions: int = 1) -> None:
    admin = KafkaAdmin(KafkaConnection(bootstrap), "test")
    await admin.start()
    await admin.create_topic(topic, partitions)
    await admin.close()
    producer = make_producer(KafkaConnection(bootstrap), "test")
    await producer.start()
    for payload in payloads:
        await producer.send_and_wait(topic, payload, partition=0)
    await producer.stop()


def dataset(
    name: str,
    topic: str,
    generation: int,
    partitions: dict[int, list[tuple[str, int]]],
) -> replication_pb2.DatasetPlacement:
    """partitions: partition -> [(node id, replica state)]."""
    return replication_pb2.DatasetPlacement(
        dataset=name,
        topic=topic,
        generation=generation,
        partitions=[
            replication_pb2.PartitionPlacement(
                partition=p,
                replicas=[n for n, _ in assigned],
                assignments=[
                    replication_pb2.ReplicaAssignment(node_id=n, state=state)
                    for n, state in assigned
                ],
            )
            for p, assigned in partitions.items()
        ],
    )


def placement(
    *datasets: replication_pb2.DatasetPlacement,
    retired: dict[str, int] | None = None,
    nodes: dict[str, str] | None = None,
) -> replication_pb2.Placement:
    return replication_pb2.Placement(
        version=1,
        datasets=datasets,
        retired=[
            replication_pb2.RetiredDataset(dataset=n, generation=g)
            for n, g in (retired or {}).items()
        ],
        nodes=[
            replication_pb2.Node(node_id=n, address=a, alive=True)
            for n, a in (nodes or {"n1": "127.0.0.1:1", "n2": "127.0.0.1:1"}).items()
        ],
    )


def count(node: StorageNode, partition: int = 0) -> int:
    replica = node.replica("ci", partition)
    assert replica is not None
    views = replica.snapshot(None)
    return sum(fragment.execute(COUNT, views).group_columns.states[0].counts)


def seal_into(store: SegmentStore, name: str, partition: int, generation: int, hours: int) -> None:
    """`hours` sealed segments of 10 events, segment s holding hour s, applied offset 0."""
    for seq in range(hours):
        builder = SegmentBuilder(name, partition, seq)
        rows = [{"timestamp": BASE_US + seq * HOUR_US + i, "n": i} for i in range(10)]
        (batch,) = encode_batches(rows, dataset=name, upload_id=f"u{seq}")
        builder.add(batch, offset=0)
        store.seal(builder.seal(), next_offset=0, generation=generation)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


class Nodes:
    """Storage nodes run in this test's loop; closed before the broker goes away."""

    def __init__(self, tmp_path: Path, bootstrap: str) -> None:
        self._tmp_path = tmp_path
        self._bootstrap = bootstrap
        self._running: list[tuple[asyncio.Task[None], SegmentStore]] = []
        self._servers: list[GrpcServer] = []
        self.registries: dict[str, CollectorRegistry] = {}

    def store(self, name: str) -> SegmentStore:
        return SegmentStore(str(self._tmp_path / name))

    def start(self, node_id: str, prefix: str, store: SegmentStore | None = None) -> StorageNode:
        store = store or self.store(node_id)
        registry = self.registries[node_id] = CollectorRegistry()

        async def fetch(peer: Peer, name: str, partition: int, generation: int) -> Transfer:
            return await fetch_segments(
                peer, name, partition, generation, 5, credentials.aio_channel
            )

        node = StorageNode(
            node_id,
            store,
            make_consumer(KafkaConnection(self._bootstrap), f"test-{node_id}"),
            prefix,
            SealPolicy(1_000_000, 1 << 30, 3600),
            10_000,
            StorageMetrics(registry),
            fetch_segments=fetch,
        )
        self._running.append((asyncio.ensure_future(_run(node)), store))
        return node

    async def serve(self, node: StorageNode) -> str:
        server = GrpcServer(
            "storage",
            ServiceSettings(**credentials.tls_settings()),
            CollectorRegistry(),
            credentials.token_table(),
        )
        server.add(
            storage_pb2_grpc.add_StorageServiceServicer_to_server,
            StorageApi(node),
            service_name(storage_pb2.DESCRIPTOR, "StorageService"),
        )
        await server.start()
        self._servers.append(server)
        return server.address

    async def close(self) -> None:
        for server in self._servers:
            await server.stop()
        for task, store in self._running:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            store.close()
        self._running.clear()
        self._servers.clear()


async def _run(node: StorageNode) -> None:
    await node.consumer.start()
    try:
        await node.run()
    finally:
        await node.consumer.stop()


@pytest.fixture
async def nodes(tmp_path: Path, broker: EmbeddedBroker) -> AsyncIterator[Nodes]:
    running = Nodes(tmp_path, broker.bootstrap)
    yield running
    await running.close()


async def test_a_name_created_again_starts_empty_on_its_own_topic_and_retirement_deletes(
    broker: EmbeddedBroker, nodes: Nodes, topic_prefix: str
) -> None:
    first, second = f"{topic_prefix}.ci", f"{topic_prefix}.ci.2"
    await produce(broker.bootstrap, first, records("g1", 300))
    node = nodes.start("n1", topic_prefix)
    node.follow(placement(dataset("ci", first, 1, {0: [("n1", ONLINE)]})))
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.next_offset == 3)
    await node.seal_all()
    assert node.store.generation("ci", 0) == 1 and count(node) == 300

    # Deleted and created again: generation 2, its own topic, which starts at offset 0 again.
    await produce(broker.bootstrap, second, records("g2", 100))
    node.follow(placement(dataset("ci", second, 2, {0: [("n1", ONLINE)]})))
    await eventually_async(
        lambda: (r := node.replica("ci", 0)) is not None and r.generation == 2 and r.online
    )
    assert node.topic("ci") == second
    assert count(node) == 100  # nothing of generation 1
    await node.seal_all()
    assert node.store.generation("ci", 0) == 2
    assert node.store.usage("ci", 0)[0] == 100

    # Deleted: the placement retires generation 2 and the data goes.
    node.follow(placement(retired={"ci": 2}))
    await eventually_async(lambda: node.replica("ci", 0) is None and node.store.partitions() == [])


async def test_a_dataset_absent_from_the_placement_is_kept(
    broker: EmbeddedBroker, nodes: Nodes, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.ci"
    await produce(broker.bootstrap, topic, records("a", 200))
    node = nodes.start("n1", topic_prefix)
    node.follow(placement(dataset("ci", topic, 1, {0: [("n1", ONLINE)]})))
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.next_offset == 2)

    node.follow(placement())  # Kafka wiped: the catalog no longer knows the name
    await eventually_async(lambda: node.replica("ci", 0) is None)
    assert node.store.usage("ci", 0)[0] == 200  # sealed on the way out, kept

    node.follow(placement(dataset("ci", topic, 1, {0: [("n1", ONLINE)]})))
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.online)
    assert count(node) == 200


async def test_first_placement_sweeps_deleted_datasets_and_partitions_served_elsewhere(
    broker: EmbeddedBroker, nodes: Nodes, topic_prefix: str
) -> None:
    store = nodes.store("n1")
    seal_into(store, "ci", 0, generation=1, hours=2)  # superseded: ci is live at generation 2
    seal_into(store, "old", 0, generation=1, hours=2)  # retired
    seal_into(store, "web", 1, generation=1, hours=2)  # given to n2, which serves it
    seal_into(store, "web", 2, generation=1, hours=2)  # given to n2, still bootstrapping
    seal_into(store, "gone", 0, generation=3, hours=2)  # unknown to the placement
    second = f"{topic_prefix}.ci.2"
    await produce(broker.bootstrap, second, records("g2", 100))
    await produce(broker.bootstrap, f"{topic_prefix}.web", [], partitions=3)

    node = nodes.start("n1", topic_prefix, store)
    node.follow(
        placement(
            dataset("ci", second, 2, {0: [("n1", ONLINE)]}),
            dataset(
                "web",
                f"{topic_prefix}.web",
                1,
                {1: [("n2", ONLINE)], 2: [("n2", BOOTSTRAPPING)]},
            ),
            retired={"old": 1},
        )
    )
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.online)
    assert count(node) == 100
    assert node.store.partitions() == [("gone", 0), ("web", 2)]
    assert node.store.generations() == {("gone", 0): 3, ("web", 2): 1}


async def test_a_new_replica_copies_only_a_peer_of_the_same_generation(
    broker: EmbeddedBroker, nodes: Nodes, topic_prefix: str
) -> None:
    first, second = f"{topic_prefix}.ci", f"{topic_prefix}.ci.2"
    await produce(broker.bootstrap, first, records("g1", 300))
    await produce(broker.bootstrap, second, records("g2", 100))
    old = nodes.start("n1", topic_prefix)
    old.follow(placement(dataset("ci", first, 1, {0: [("n1", ONLINE)]})))
    await eventually_async(lambda: (r := old.replica("ci", 0)) is not None and r.online)
    await old.seal_all()
    address = await nodes.serve(old)
    addresses = {"n1": address, "n2": "127.0.0.1:1"}

    # The peer still holds generation 1 (it has not seen the new placement yet): asked for
    # generation 2, it refuses, and the new replica waits rather than copy the deleted dataset.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await fetch_segments(Peer("n1", address), "ci", 0, 2, 5, credentials.aio_channel)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "holds generation 1" in (refused.value.details() or "")
    new = nodes.start("n2", topic_prefix)
    generation_2 = dataset("ci", second, 2, {0: [("n1", ONLINE), ("n2", BOOTSTRAPPING)]})
    new.follow(placement(generation_2, nodes=addresses))
    await eventually_async(lambda: ("ci", 0) in new.bootstrapping)
    await asyncio.sleep(1.5)  # a refused copy and a retry
    assert new.replica("ci", 0) is None and new.store.partitions() == []

    # Once the peer serves generation 2 too, the copy goes through.
    old.follow(placement(generation_2, nodes=addresses))
    await eventually_async(
        lambda: (r := old.replica("ci", 0)) is not None and r.generation == 2 and r.online
    )
    await old.seal_all()
    await eventually_async(lambda: (r := new.replica("ci", 0)) is not None and r.online)
    assert new.bootstrap_bytes[("ci", 0)] > 0
    assert new.store.generation("ci", 0) == 2
    assert count(new) == count(old) == 100


async def test_usage_reports_segments_and_drops_delete_below_the_bound(
    broker: EmbeddedBroker, nodes: Nodes, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.ci"
    store = nodes.store("n1")
    seal_into(store, "ci", 0, generation=1, hours=6)
    await produce(broker.bootstrap, topic, records("open", 50, hour=10))
    node = nodes.start("n1", topic_prefix, store)
    node.follow(placement(dataset("ci", topic, 1, {0: [("n1", ONLINE)]})))
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.online)

    (usage,) = await node.upkeep.collect_usage()
    assert (usage.dataset, usage.partition, usage.generation) == ("ci", 0, 1)
    assert usage.rows == 60 + 50
    assert len(usage.segments) == 6
    assert [s.max_timestamp_us for s in usage.segments] == [
        BASE_US + h * HOUR_US + 9 for h in range(6)
    ]
    assert usage.bytes == sum(s.bytes for s in usage.segments) > 0
    # The oldest sealed event and the newest open one.
    assert (usage.min_timestamp_us, usage.max_timestamp_us) == (
        BASE_US,
        BASE_US + 10 * HOUR_US + 49,
    )
    registry = nodes.registries["n1"]
    assert sample(registry, "flakehouse_storage_stored_rows", dataset="ci") == 110

    retention = quota_pb2.CUTOFF_REASON_RETENTION
    bounds = [
        quota_pb2.DropBound(dataset="ci", before_us=BASE_US + 3 * HOUR_US, reason=retention),
        quota_pb2.DropBound(dataset="other", before_us=BASE_US + 99 * HOUR_US, reason=retention),
    ]
    await node.upkeep.drop_expired(bounds)
    assert [m.sequence for m in node.store.segment_metas("ci", 0)] == [3, 4, 5]
    assert count(node) == 30 + 50
    labels = {"dataset": "ci", "reason": "retention"}
    assert sample(registry, "flakehouse_storage_dropped_segments_total", **labels) == 3
    assert sample(registry, "flakehouse_storage_dropped_rows_total", **labels) == 30
    assert node.store.drop_watermark("ci", 0) == BASE_US + 3 * HOUR_US

    def behind_s() -> float | None:
        return sample(registry, "flakehouse_storage_drop_behind_seconds", dataset="ci")

    # Measured before the round: the bound minus the newest event of segment 0.
    assert behind_s() == (3 * HOUR_US - 9) / 1e6

    by_size = quota_pb2.CUTOFF_REASON_STORED_BYTES
    await node.upkeep.drop_expired(
        [quota_pb2.DropBound(dataset="ci", before_us=BASE_US + 5 * HOUR_US, reason=by_size)]
    )
    assert [m.sequence for m in node.store.segment_metas("ci", 0)] == [5]
    labels = {"dataset": "ci", "reason": "stored_bytes"}
    assert sample(registry, "flakehouse_storage_dropped_segments_total", **labels) == 2
    assert node.store.applied_offset("ci", 0) == 0  # the offset is not the drops' business
    assert behind_s() == (2 * HOUR_US - 9) / 1e6
    assert node.store.drop_watermark("ci", 0) == BASE_US + 5 * HOUR_US

    # Nothing below the bound: nothing behind.
    await node.upkeep.drop_expired(
        [quota_pb2.DropBound(dataset="ci", before_us=BASE_US + 5 * HOUR_US)]
    )
    assert behind_s() == 0

    # A bound computed for another generation of the dataset does not apply.
    other = quota_pb2.DropBound(dataset="ci", before_us=BASE_US + 99 * HOUR_US, generation=2)
    await node.upkeep.drop_expired([other])
    assert [m.sequence for m in node.store.segment_metas("ci", 0)] == [5]
    assert behind_s() is None

    await node.upkeep.drop_expired([])
    assert behind_s() is None


async def test_drops_that_keep_failing_show_a_growing_backlog(
    broker: EmbeddedBroker,
    nodes: Nodes,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = f"{topic_prefix}.ci"
    await produce(broker.bootstrap, topic, [])
    store = nodes.store("n1")
    seal_into(store, "ci", 0, generation=1, hours=3)
    node = nodes.start("n1", topic_prefix, store)
    node.follow(placement(dataset("ci", topic, 1, {0: [("n1", ONLINE)]})))
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.online)
    await node.upkeep.collect_usage()

    def broken(*args: Any) -> Any:
        raise OSError("disk gone")

    monkeypatch.setattr(node.store, "drop_expired", broken)
    registry = nodes.registries["n1"]
    for hours in (5, 6):
        bound = quota_pb2.DropBound(dataset="ci", generation=1, before_us=BASE_US + hours * HOUR_US)
        await node.upkeep.drop_expired([bound])
        behind = sample(registry, "flakehouse_storage_drop_behind_seconds", dataset="ci")
        assert behind == (hours * HOUR_US - 9) / 1e6
    assert [r.getMessage() for r in caplog.records].count("drop failed") == 2
    assert len(store.segment_metas("ci", 0)) == 3


async def test_drops_skip_a_partition_whose_generation_changed_since_the_report(
    broker: EmbeddedBroker, nodes: Nodes, topic_prefix: str
) -> None:
    first, second = f"{topic_prefix}.ci", f"{topic_prefix}.ci.2"
    await produce(broker.bootstrap, first, [])
    await produce(broker.bootstrap, second, records("g2", 20, hour=1))
    store = nodes.store("n1")
    seal_into(store, "ci", 0, generation=1, hours=3)
    node = nodes.start("n1", topic_prefix, store)
    node.follow(placement(dataset("ci", first, 1, {0: [("n1", ONLINE)]})))
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.online)
    await node.upkeep.collect_usage()

    node.follow(placement(dataset("ci", second, 2, {0: [("n1", ONLINE)]})))
    await eventually_async(
        lambda: (r := node.replica("ci", 0)) is not None and r.generation == 2 and r.online
    )
    await node.seal_all()
    bound: Any = quota_pb2.DropBound(dataset="ci", before_us=BASE_US + 99 * HOUR_US)
    await node.upkeep.drop_expired([bound])  # meant for generation 1, reported before the change
    assert node.store.usage("ci", 0)[0] == 20
