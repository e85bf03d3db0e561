"""The controller on the real broker takes its datasets from the dataset catalog: a live record
is placed with its generation and topic, a deleted one is listed as retired, and a topic the
catalog does not name is not placed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.common.v1 import datasets_pb2
from flakehouse.core.catalog import CatalogReader, generation_topic
from flakehouse.core.kafka import KafkaAdmin, KafkaConnection, make_producer
from flakehouse.core.settings import KafkaSettings
from flakehouse.replication.app import ReplicationApp
from flakehouse.replication.settings import ReplicationSettings
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc
from tests import credentials

pytestmark = [pytest.mark.processes, pytest.mark.broker]


class Ingest:
    """Writes catalog records as ingest does."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.prefix = prefix
        kafka = KafkaConnection(bootstrap)
        self.reader = CatalogReader(
            KafkaSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix), kafka, "test"
        )
        self.producer = make_producer(kafka, "test")

    async def write(self, name: str, generation: int, deleted: bool = False) -> None:
        record = datasets_pb2.DatasetRecord(
            name=name,
            generation=generation,
            topic=generation_topic(self.prefix, name, generation),
            partitions=2,
            created_us=1,
            deleted_us=2 if deleted else 0,
        )
        await self.reader.write(self.producer, record)


@pytest.fixture
async def ingest(broker: EmbeddedBroker, topic_prefix: str) -> AsyncIterator[Ingest]:
    writer = Ingest(broker.bootstrap, topic_prefix)
    await writer.reader.start()
    await writer.producer.start()
    yield writer
    await writer.producer.stop()
    await writer.reader.stop()


@pytest.fixture
async def replication(broker: EmbeddedBroker, topic_prefix: str) -> AsyncIterator[ReplicationApp]:
    app = ReplicationApp(
        ReplicationSettings(
            kafka_bootstrap=broker.bootstrap,
            topic_prefix=topic_prefix,
            replication_factor=1,
            reconcile_interval_s=60,  # refreshed by the test (or by GetPlacement)
        )
    )
    await app.start()
    yield app
    await app.stop()


async def placement_of(app: ReplicationApp, dataset: str = "") -> replication_pb2.Placement:
    async with credentials.aio_channel(app.server.address) as channel:
        stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        request = replication_pb2.GetPlacementRequest(dataset=dataset)
        return (await stub.GetPlacement(request)).placement


def placed(placement: replication_pb2.Placement) -> list[tuple[str, str, int, int]]:
    return [(d.dataset, d.topic, d.generation, len(d.partitions)) for d in placement.datasets]


def retired(placement: replication_pb2.Placement) -> list[tuple[str, int]]:
    return [(r.dataset, r.generation) for r in placement.retired]


async def test_placement_follows_the_catalog_through_delete_and_create_again(
    ingest: Ingest, replication: ReplicationApp, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    p = topic_prefix
    # A topic of the prefix that the catalog does not name is not a dataset.
    admin = KafkaAdmin(KafkaConnection(broker.bootstrap), "test")
    await admin.start()
    await admin.create_topic(f"{p}.stray", 1)
    await admin.close()
    await replication.refresh()
    assert placed(await placement_of(replication)) == []

    await ingest.write("ci", 1)
    await ingest.write("nightly", 1)
    # GetPlacement of a dataset it does not know reads the catalog at once.
    assert placed(await placement_of(replication, "ci")) == [("ci", f"{p}.ci", 1, 2)]
    version = replication.controller.placement.version

    await ingest.write("ci", 1, deleted=True)
    await replication.refresh()
    placement = await placement_of(replication)
    assert placed(placement) == [("nightly", f"{p}.nightly", 1, 2)]
    assert retired(placement) == [("ci", 1)]
    assert placement.version > version

    await ingest.write("ci", 2)
    await replication.refresh()
    placement = await placement_of(replication)
    assert placed(placement) == [("ci", f"{p}.ci.2", 2, 2), ("nightly", f"{p}.nightly", 1, 2)]
    # The live generation 2 is what tells nodes to drop generation 1 now.
    assert retired(placement) == []

    await ingest.write("nightly", 1, deleted=True)
    await replication.refresh()
    only_ci = await placement_of(replication, "ci")
    assert placed(only_ci) == [("ci", f"{p}.ci.2", 2, 2)]
    assert retired(only_ci) == []
    assert retired(await placement_of(replication)) == [("nightly", 1)]


async def test_a_restarted_controller_keeps_generations_and_retired(
    ingest: Ingest, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    settings = ReplicationSettings(
        kafka_bootstrap=broker.bootstrap, topic_prefix=topic_prefix, reconcile_interval_s=60
    )
    await ingest.write("ci", 1, deleted=True)
    await ingest.write("nightly", 3)
    first = ReplicationApp(settings)
    await first.start()
    before = first.controller.placement
    await first.stop()

    second = ReplicationApp(settings)
    await second.start()
    try:
        assert second.controller.placement == before
        assert placed(before) == [("nightly", f"{topic_prefix}.nightly.3", 3, 2)]
        assert retired(before) == [("ci", 1)]
    finally:
        await second.stop()
