"""A storage node against the real broker: the policy for a broker whose end fell below the
applied offset (tansu restarted, a topic re-created), and segment transfer to a new replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.common.v1 import plan_pb2
from flakehouse.core.kafka import KafkaAdmin, KafkaConnection, make_consumer, make_producer
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.core.settings import ServiceSettings
from flakehouse.events.batch import encode_batches
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage import fragment
from flakehouse.storage.api import StorageApi
from flakehouse.storage.metrics import StorageMetrics
from flakehouse.storage.node import StorageNode
from flakehouse.storage.replica import Replica, SealPolicy
from flakehouse.storage.store import SegmentStore
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc
from tests import credentials
from tests.support import eventually_async

pytestmark = [pytest.mark.processes, pytest.mark.broker]
COUNT = plan_pb2.QueryPlan(
    ir_version=1,
    dataset="ci",
    group_by=[plan_pb2.GroupKey(field="status")],
    aggregates=[plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)],
)


def records(upload: str, cases: int) -> list[bytes]:
    events = [
        {"timestamp": 1_700_000_000_000_000 + i, "status": "failed" if i % 7 == 0 else "passed"}
        for i in range(cases)
    ]
    return [
        b.SerializeToString()
        for b in encode_batches(events, dataset="ci", upload_id=upload, max_rows=100)
    ]


async def produce(bootstrap: str, prefix: str, payloads: list[bytes]) -> None:
    admin = KafkaAdmin(KafkaConnection(bootstrap), "test")
    await admin.start()
    await admin.create_topic(f"{prefix}.ci", 1)
    await admin.close()
    producer = make_producer(KafkaConnection(bootstrap), "test")
    await producer.start()
    for payload in payloads:
        await producer.send_and_wait(f"{prefix}.ci", payload, partition=0)
    await producer.stop()


def placement(node_id: str, prefix: str) -> replication_pb2.Placement:
    return replication_pb2.Placement(
        version=1,
        datasets=[
            replication_pb2.DatasetPlacement(
                dataset="ci",
                topic=f"{prefix}.ci",
                partitions=[replication_pb2.PartitionPlacement(partition=0, replicas=[node_id])],
            )
        ],
    )


def counts(replicas: list[Replica]) -> dict[str, int]:
    views = [view for replica in replicas for view in replica.snapshot(None)]
    groups = fragment.execute(COUNT, views).group_columns
    # strict: every status is a string.
    return dict(zip(groups.keys[0].string_values, groups.states[0].counts, strict=True))


class Nodes:
    """Storage nodes run in this test's loop; closed before any broker goes away."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._running: list[tuple[asyncio.Task[None], SegmentStore]] = []

    def start(self, bootstrap: str, prefix: str) -> StorageNode:
        store = SegmentStore(str(self._tmp_path / f"node{len(self._running)}"))
        node = StorageNode(
            "n1",
            store,
            make_consumer(KafkaConnection(bootstrap), "test-node"),
            prefix,
            SealPolicy(150, 1 << 20, 60),
            10_000,
            StorageMetrics(CollectorRegistry()),
        )
        self._running.append((asyncio.ensure_future(_run(node)), store))
        return node

    async def close(self) -> None:
        for task, store in self._running:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            store.close()
        self._running.clear()


async def _run(node: StorageNode) -> None:
    await node.consumer.start()
    try:
        await node.run()
    finally:
        await node.consumer.stop()


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    running = Nodes(tmp_path)
    yield running
    await running.close()


async def test_broker_reset_rebases_keeps_stored_rows_and_reads_new_ones(
    nodes: Nodes, topic_prefix: str
) -> None:
    broker = EmbeddedBroker().start()
    try:
        first = records("upload-1", 500)  # 5 records of 100 events
        await produce(broker.bootstrap, topic_prefix, first)
        node = nodes.start(broker.bootstrap, topic_prefix)
        node.follow(placement("n1", topic_prefix))
        await eventually_async(
            lambda: (r := node.replica("ci", 0)) is not None and r.next_offset == 5
        )
        replica = node.replica("ci", 0)
        assert replica is not None and counts([replica]) == {"failed": 72, "passed": 428}

        # The broker comes back empty (tansu keeps topics in memory), the topic is re-created,
        # and it holds fewer records than this node applied: end 2 < applied 5.
        port = broker.port
        broker.stop()
        broker = EmbeddedBroker(port=port).start()
        replayed = first[:1]  # an old record again: its events must not count twice
        await produce(broker.bootstrap, topic_prefix, [*records("upload-2", 100), *replayed])
        await eventually_async(
            lambda: replica.rebases == 1 and replica.online and replica.next_offset == 2
        )
        assert counts([replica]) == {"failed": 72 + 15, "passed": 428 + 85}
        assert "fell below the applied offset 5" in replica.note
        samples = node.metrics.broker_behind.collect()[0].samples
        assert [s.value for s in samples if s.name.endswith("_total")] == [1.0]
    finally:
        await nodes.close()
        broker.stop()


async def test_an_idle_caught_up_replica_stays_online_when_its_placement_changes(
    nodes: Nodes, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    """Seen: a fresh dataset's partition answered complete, then both replicas declined it as
    "catching up (1 records behind)". tansu answers ListOffsets(latest) with one past the base
    offset of the last batch: after one batch of five records, 1. A placement change (another
    dataset created) made every node ask ListOffsets again, take 1 < 5 for a wiped broker and
    read the topic again. Only a fetch's high watermark may say that now."""
    admin = KafkaAdmin(KafkaConnection(broker.bootstrap), "test")
    await admin.start()
    await admin.create_topic(f"{topic_prefix}.ci", 1)
    await admin.create_topic(f"{topic_prefix}.other", 1)
    await admin.close()
    producer = make_producer(KafkaConnection(broker.bootstrap), "test")
    await producer.start()
    sent = [await producer.send(f"{topic_prefix}.ci", r, partition=0) for r in records("u", 500)]
    await asyncio.gather(*sent)  # one batch of five records
    await producer.stop()
    node = nodes.start(broker.bootstrap, topic_prefix)
    node.follow(placement("n1", topic_prefix))
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.online)
    replica = node.replica("ci", 0)
    assert replica is not None and replica.next_offset == 5

    changed = placement("n1", topic_prefix)
    changed.version = 2
    changed.datasets.append(
        replication_pb2.DatasetPlacement(
            dataset="other",
            topic=f"{topic_prefix}.other",
            partitions=[replication_pb2.PartitionPlacement(partition=0, replicas=["n1"])],
        )
    )
    node.follow(changed)
    await eventually_async(lambda: node.replica("other", 0) is not None)
    for _ in range(20):  # a second of fetches on the idle partition
        assert replica.online and replica.rebases == 0 and replica.lag == 0, replica.note
        await asyncio.sleep(0.05)
    # And it goes on applying what comes.
    producer = make_producer(KafkaConnection(broker.bootstrap), "test")
    await producer.start()
    await producer.send_and_wait(f"{topic_prefix}.ci", records("v", 100)[0], partition=0)
    await producer.stop()
    await eventually_async(lambda: replica.next_offset == 6, timeout_s=10)
    assert replica.rebases == 0 and counts([replica]) == {"failed": 72 + 15, "passed": 428 + 85}


async def test_segments_stream_to_a_new_replica_with_identical_answers(
    broker: EmbeddedBroker, tmp_path: Path, nodes: Nodes, topic_prefix: str
) -> None:
    await produce(broker.bootstrap, topic_prefix, records("upload-t", 1000))
    node = nodes.start(broker.bootstrap, topic_prefix)
    node.follow(placement("n1", topic_prefix))
    await eventually_async(lambda: (r := node.replica("ci", 0)) is not None and r.next_offset == 10)
    await node.seal_all()
    source = node.replica("ci", 0)
    assert source is not None
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
    try:
        async with credentials.aio_channel(server.address) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            request = storage_pb2.StreamSegmentsRequest(dataset="ci", partition=0)
            items = [item async for item in stub.StreamSegments(request)]
    finally:
        await server.stop()
    segments = [i.segment for i in items if i.HasField("segment")]
    keys = [i.batch_keys for i in items if i.HasField("batch_keys")]
    assert items[-1].WhichOneof("item") == "applied_offset"
    assert items[-1].applied_offset == 10 and len(segments) >= 1
    assert sum(len(chunk) for chunk in keys) == 10 * 20  # one 20-byte key per record

    receiver = SegmentStore(str(tmp_path / "receiver"))
    receiver.install_segments("ci", 0, segments, items[-1].applied_offset, batch_keys=keys)
    copy = Replica("ci", 0, receiver, 10_000)
    assert copy.next_offset == 10
    assert counts([copy]) == counts([source]) == {"failed": 143, "passed": 857}
    receiver.close()

    # Without a dedupe window, the keys alone drop copies of those records arriving later.
    receiver = SegmentStore(str(tmp_path / "receiver"))
    copy = Replica("ci", 0, receiver, 0)
    replayed = list(enumerate(records("upload-t", 1000), start=10))
    assert copy.apply(replayed).duplicates == 1000
    assert counts([copy]) == {"failed": 143, "passed": 857}
    receiver.close()
