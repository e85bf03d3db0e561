"""Dataset lifecycle through the ingest service on the real broker: generations, the catalog as
the only source of datasets, limits checked before anything is created, set with the dataset and
dropped with it, and topic retention following the limits on a broker that refuses AlterConfigs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.common.v1 import datasets_pb2
from flakehouse.core.kafka import KafkaAdmin, KafkaConnection, read_state_topic
from flakehouse.ingest.app import IngestApp
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.quota.v1 import quota_pb2
from services.ingest.tests.conftest import StartIngest
from tests import credentials
from tests.support import eventually_async

pytestmark = [pytest.mark.processes, pytest.mark.broker]

REPORT = b"""<testsuite name="s"><testcase classname="c" name="a"/></testsuite>"""


def stub_of(app: IngestApp) -> ingest_pb2_grpc.IngestServiceAsyncStub:
    channel = credentials.aio_channel(app.server.address)
    return ingest_pb2_grpc.IngestServiceStub(channel)


async def refused(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code()


async def topics(broker: EmbeddedBroker, prefix: str) -> dict[str, int]:
    admin = KafkaAdmin(KafkaConnection(broker.bootstrap), "test")
    await admin.start()
    try:
        # Only the test's own topics are described: the session's broker holds every other
        # test's too, and describing them all takes seconds late in a full run.
        names = [
            topic
            for topic in await admin.topic_names()
            if topic.startswith(f"{prefix}.") and not topic.startswith(f"{prefix}.__")
        ]
        return await admin.partition_counts(names)
    finally:
        await admin.close()


async def retention_ms(broker: EmbeddedBroker, topic: str) -> str | None:
    admin = KafkaAdmin(KafkaConnection(broker.bootstrap), "test")
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        (response,) = await admin._admin.describe_configs([resource])
        entries = response.resources[0][4]
        return next((entry[1] for entry in entries if entry[0] == "retention.ms"), None)
    finally:
        await admin.close()


async def uploads(dataset: str) -> AsyncIterator[ingest_pb2.UploadRequest]:
    yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(dataset=dataset))
    yield ingest_pb2.UploadRequest(chunk=REPORT)
    yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size=len(REPORT)))


async def test_a_name_deleted_and_created_again_is_a_new_generation(
    start_ingest: Callable[..., Awaitable[IngestApp]], broker: EmbeddedBroker, topic_prefix: str
) -> None:
    app = await start_ingest()
    stub = stub_of(app)
    first = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci"))
    assert first.created
    assert (first.dataset.name, first.dataset.topic) == ("ci", f"{topic_prefix}.ci")
    assert (first.dataset.generation, first.dataset.partitions) == (1, 2)
    assert first.dataset.created_us > 0

    same = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci", partitions=2))
    assert not same.created and same.dataset == first.dataset
    other_count = stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci", partitions=3))
    assert await refused(other_count) == grpc.StatusCode.ALREADY_EXISTS

    deleted = await stub.DeleteDataset(ingest_pb2.DeleteDatasetRequest(name="ci"))
    assert deleted.dataset == first.dataset
    gone = stub.GetDataset(ingest_pb2.GetDatasetRequest(name="ci"))
    assert await refused(gone) == grpc.StatusCode.NOT_FOUND
    again = stub.DeleteDataset(ingest_pb2.DeleteDatasetRequest(name="ci"))
    assert await refused(again) == grpc.StatusCode.NOT_FOUND
    assert (await stub.ListDatasets(ingest_pb2.ListDatasetsRequest())).datasets == []

    second = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci"))
    assert second.created
    assert (second.dataset.generation, second.dataset.topic) == (2, f"{topic_prefix}.ci.2")
    listed = await stub.ListDatasets(ingest_pb2.ListDatasetsRequest())
    assert list(listed.datasets) == [second.dataset]
    assert await topics(broker, topic_prefix) == {f"{topic_prefix}.ci.2": 2}

    # Uploads go to the live generation's topic.
    replies = [reply async for reply in stub.Upload(uploads("ci"))]
    uploaded = replies[-1].result
    assert uploaded.events == 1 and not uploaded.dataset_created

    # Another ingest process reads the same catalog.
    other = stub_of(await start_ingest())
    got = await other.GetDataset(ingest_pb2.GetDatasetRequest(name="ci"))
    assert got.dataset == second.dataset


async def test_a_topic_the_catalog_does_not_name_is_not_a_dataset(
    start_ingest: Callable[..., Awaitable[IngestApp]], broker: EmbeddedBroker, topic_prefix: str
) -> None:
    app = await start_ingest()
    await app.admin.create_topic(f"{topic_prefix}.stray", 3)
    stub = stub_of(app)
    assert (await stub.ListDatasets(ingest_pb2.ListDatasetsRequest())).datasets == []
    stray = stub.GetDataset(ingest_pb2.GetDatasetRequest(name="stray"))
    assert await refused(stray) == grpc.StatusCode.NOT_FOUND
    # Creating it adopts the topic that is there (one a failed creation left behind).
    created = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="stray"))
    assert created.created and created.dataset.partitions == 3


async def test_a_dataset_deleted_while_being_created_is_refused_and_stays_deleted(
    start_ingest: Callable[..., Awaitable[IngestApp]],
    broker: EmbeddedBroker,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    creator, deleter = await start_ingest(), await start_ingest()
    create_topic = creator.admin.create_topic

    async def deleted_elsewhere_meanwhile(topic: str, partitions: int, **options: Any) -> bool:
        # Another process's creation of the same generation, then its delete, land between
        # this creator's topic and its catalog record.
        created = await create_topic(topic, partitions, **options)
        deleted = datasets_pb2.DatasetRecord(
            name="ci", generation=1, topic=topic, partitions=partitions, deleted_us=1
        )
        await deleter.catalog.write(deleter.producer, deleted)
        return created

    monkeypatch.setattr(creator.admin, "create_topic", deleted_elsewhere_meanwhile)
    stub = stub_of(creator)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci"))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.value.details() == "dataset 'ci' was deleted while being created; retry"
    gone = stub.GetDataset(ingest_pb2.GetDatasetRequest(name="ci"))
    assert await refused(gone) == grpc.StatusCode.NOT_FOUND
    assert await topics(broker, topic_prefix) == {}
    # The deleted record is the topic's last of the name: compaction keeps the dataset deleted.
    written = await read_state_topic(
        creator.settings,
        KafkaConnection.from_settings(creator.settings),
        "test",
        creator.catalog.topic,
    )
    deleted_us = [datasets_pb2.DatasetRecord.FromString(v or b"").deleted_us for _, v in written]
    assert deleted_us == [1, 0, 1]

    monkeypatch.undo()
    again = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci"))
    assert again.created and again.dataset.generation == 2


async def test_a_topic_kafka_will_not_delete_does_not_keep_ingest_from_starting(
    start_ingest: Callable[..., Awaitable[IngestApp]],
    broker: EmbeddedBroker,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def refused_delete(self: KafkaAdmin, name: str) -> bool:
        raise KafkaError("refused by the test")

    first = await start_ingest()
    stub = stub_of(first)
    created = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci"))
    monkeypatch.setattr(KafkaAdmin, "delete_topic", refused_delete)
    await stub.DeleteDataset(ingest_pb2.DeleteDatasetRequest(name="ci"))
    assert await topics(broker, topic_prefix) == {created.dataset.topic: 2}

    def failures() -> int:
        text = "could not delete a deleted dataset's topic"
        return sum(text in r.getMessage() for r in caplog.records)

    assert failures() == 1
    # The next start tries again, fails, logs it and serves.
    second = await start_ingest()
    await eventually_async(lambda: failures() == 2)
    assert not second.failed.is_set()
    listed = await stub_of(second).ListDatasets(ingest_pb2.ListDatasetsRequest())
    assert list(listed.datasets) == []
    # Once Kafka deletes topics again, a start removes it (in the background: on a loaded
    # machine that can take a while; the start's INFO lines say whether it got that far).
    caplog.set_level(logging.INFO, logger="flakehouse.ingest.datasets")
    monkeypatch.undo()
    await start_ingest()

    async def no_topic_left() -> bool:
        left = await topics(broker, topic_prefix)
        assert left == {}, left
        return True

    await eventually_async(no_topic_left, "the deleted dataset's topic removed", timeout_s=30.0)


@pytest.mark.parametrize(
    "limits",
    [
        quota_pb2.Quota(retention_seconds=10),
        quota_pb2.Quota(events_per_second=-1),
        quota_pb2.Quota(bytes_per_second=float("nan")),
    ],
)
async def test_bad_limits_create_nothing(
    start_ingest: Callable[..., Awaitable[IngestApp]],
    fake_quota: Any,
    broker: EmbeddedBroker,
    topic_prefix: str,
    limits: quota_pb2.Quota,
) -> None:
    stub = stub_of(await start_ingest(quota_address=fake_quota.address))
    bad = stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci", limits=limits))
    assert await refused(bad) == grpc.StatusCode.INVALID_ARGUMENT
    assert (await stub.ListDatasets(ingest_pb2.ListDatasetsRequest())).datasets == []
    assert await topics(broker, topic_prefix) == {}
    assert fake_quota.set_calls == []
    created = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci"))
    assert created.dataset.generation == 1, "a refused creation used no generation"


async def test_limits_without_a_quota_service_create_nothing(
    start_ingest: Callable[..., Awaitable[IngestApp]], broker: EmbeddedBroker, topic_prefix: str
) -> None:
    stub = stub_of(await start_ingest())
    limits = quota_pb2.Quota(retention_seconds=60)
    limited = ingest_pb2.CreateDatasetRequest(name="ci", limits=limits)
    assert await refused(stub.CreateDataset(limited)) == grpc.StatusCode.FAILED_PRECONDITION
    assert await topics(broker, topic_prefix) == {}


async def test_limits_are_set_with_the_dataset_and_dropped_with_it(
    start_ingest: Callable[..., Awaitable[IngestApp]],
    fake_quota: Any,
    broker: EmbeddedBroker,
    topic_prefix: str,
) -> None:
    stub = stub_of(await start_ingest(quota_address=fake_quota.address))
    limits = quota_pb2.Quota(dataset="ignored", retention_seconds=3600, max_concurrent_queries=2)
    created = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci", limits=limits))
    assert fake_quota.set_calls == [
        quota_pb2.Quota(dataset="ci", retention_seconds=3600, max_concurrent_queries=2)
    ]
    assert await retention_ms(broker, created.dataset.topic) == "3600000"

    # Without limits, quota is not asked; an existing dataset keeps its limits.
    await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="plain"))
    await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci", limits=quota_pb2.Quota()))
    assert len(fake_quota.set_calls) == 1

    await stub.DeleteDataset(ingest_pb2.DeleteDatasetRequest(name="ci"))
    # With the generation deleted: quota keeps the limits of a newer one.
    assert fake_quota.deleted == [("ci", 1)]


async def test_limits_quota_refuses_undo_the_creation(
    start_ingest: Callable[..., Awaitable[IngestApp]],
    fake_quota: Any,
    broker: EmbeddedBroker,
    topic_prefix: str,
) -> None:
    stub = stub_of(await start_ingest(quota_address=fake_quota.address))
    fake_quota.refuse_set = grpc.StatusCode.UNAVAILABLE
    limits = quota_pb2.Quota(retention_seconds=60)
    limited = ingest_pb2.CreateDatasetRequest(name="ci", limits=limits)
    assert await refused(stub.CreateDataset(limited)) == grpc.StatusCode.UNAVAILABLE
    assert (await stub.ListDatasets(ingest_pb2.ListDatasetsRequest())).datasets == []
    # Retried once quota is back: created afresh, with its limits.
    fake_quota.refuse_set = None
    assert (await stub.CreateDataset(limited)).created
    assert [q.dataset for q in fake_quota.set_calls] == ["ci"]


async def test_retention_follows_the_limits_and_a_refusing_broker_is_logged_once(
    start_ingest: Callable[..., Awaitable[IngestApp]],
    fake_quota: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="flakehouse.ingest.retention_follower")
    app = await start_ingest(quota_address=fake_quota.address)
    stub = stub_of(app)
    limits = quota_pb2.Quota(retention_seconds=3600)
    created = await stub.CreateDataset(ingest_pb2.CreateDatasetRequest(name="ci", limits=limits))
    topic = created.dataset.topic
    assert app.retention.applied == {topic: 3600}

    # tansu lacks AlterConfigs: each change is tried, the refusal logged once, nothing crashes.
    for seconds in (7200, 600, 0):
        fake_quota.publish(quota_pb2.Quota(dataset="ci", retention_seconds=seconds))
        await eventually_async(lambda s=seconds: app.retention.applied.get(topic) == s)  # type: ignore[misc]
    refusals = [r for r in caplog.records if "refuses to change topic configs" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert not app.failed.is_set()
    # The service still works.
    assert (await stub.GetDataset(ingest_pb2.GetDatasetRequest(name="ci"))).dataset.topic == topic


async def test_every_ingest_replica_and_later_start_says_the_same_cluster_id(
    start_ingest: StartIngest,
) -> None:
    first, second = await start_ingest(), await start_ingest()
    ids = [
        (await stub_of(app).GetCluster(ingest_pb2.GetClusterRequest())).cluster_id
        for app in (first, second)
    ]
    assert ids[0].startswith("fhc-") and ids[0] == ids[1]
    again = await start_ingest()  # as a restart does: the id read back from Kafka
    assert (await stub_of(again).GetCluster(ingest_pb2.GetClusterRequest())).cluster_id == ids[0]
