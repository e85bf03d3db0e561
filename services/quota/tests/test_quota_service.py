"""The quota service on the real broker: limits and floors durable across restarts and pushed to
watchers, only for datasets of the catalog; the stored-bytes floor from usage reports, drop
bounds, query slots and usage."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.common.v1 import datasets_pb2
from flakehouse.core.catalog import CatalogReader, generation_topic
from flakehouse.core.errors import Unavailable
from flakehouse.core.kafka import KafkaConnection, make_producer, quotas_topic, read_state_topic
from flakehouse.quota.app import QuotaApp
from flakehouse.quota.settings import QuotaSettings
from flakehouse.quota.store import LimitsStore
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc
from tests import credentials
from tests.support import eventually_async

pytestmark = [pytest.mark.processes, pytest.mark.broker]

US = 1_000_000
HOUR_US = 3600 * US
STORED = quota_pb2.CUTOFF_REASON_STORED_BYTES
RETENTION = quota_pb2.CUTOFF_REASON_RETENTION


def now_us() -> int:
    return time.time_ns() // 1000


async def read_quotas(settings: QuotaSettings) -> list[tuple[bytes | None, bytes | None]]:
    """The records of the quotas topic (created if missing), as quota reads them at start."""
    kafka = KafkaConnection.from_settings(settings)
    return await read_state_topic(settings, kafka, "test", quotas_topic(settings.topic_prefix))


class CatalogWriter:
    """Writes dataset records to the catalog, as ingest does."""

    def __init__(self, broker: EmbeddedBroker, prefix: str) -> None:
        settings = QuotaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix)
        self.prefix = prefix
        kafka = KafkaConnection.from_settings(settings)
        self.reader = CatalogReader(settings, kafka, "test")
        self.producer = make_producer(kafka, "test")

    async def write(self, name: str, generation: int = 1, deleted: bool = False) -> None:
        record = datasets_pb2.DatasetRecord(
            name=name,
            generation=generation,
            topic=generation_topic(self.prefix, name, generation),
            partitions=1,
            created_us=now_us(),
            deleted_us=now_us() if deleted else 0,
        )
        await self.reader.write(self.producer, record)


@pytest.fixture
async def catalog(broker: EmbeddedBroker, topic_prefix: str) -> AsyncIterator[CatalogWriter]:
    writer = CatalogWriter(broker, topic_prefix)
    await writer.reader.start()
    await writer.producer.start()
    yield writer
    await writer.producer.stop()
    await writer.reader.stop()


@asynccontextmanager
async def quota_service(
    broker: EmbeddedBroker, prefix: str, **settings: Any
) -> AsyncIterator[tuple[QuotaApp, quota_pb2_grpc.QuotaServiceAsyncStub]]:
    app = QuotaApp(QuotaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix, **settings))
    await app.start()
    channel = credentials.aio_channel(app.server.address)
    try:
        yield app, quota_pb2_grpc.QuotaServiceStub(channel)
    finally:
        await app.stop()
        await channel.close(None)


def set_request(paths: list[str] | None = None, **quota: Any) -> quota_pb2.SetQuotaRequest:
    request = quota_pb2.SetQuotaRequest(quota=quota_pb2.Quota(**quota))
    request.update_mask.paths.extend(paths or [])
    return request


async def next_limits(watch: Any) -> quota_pb2.WatchLimitsResponse:
    update = await watch.read()
    assert isinstance(update, quota_pb2.WatchLimitsResponse), update
    return update


async def usage_of(
    stub: quota_pb2_grpc.QuotaServiceAsyncStub, dataset: str
) -> quota_pb2.DatasetUsage:
    response = await stub.GetUsage(quota_pb2.GetUsageRequest(dataset=dataset))
    assert [u.dataset for u in response.datasets] == [dataset]
    return response.datasets[0]


async def test_limits_and_floor_survive_a_restart_and_reach_watchers(
    broker: EmbeddedBroker, topic_prefix: str, catalog: CatalogWriter
) -> None:
    await catalog.write("ci")
    async with quota_service(broker, topic_prefix) as (_, stub):
        watch = stub.WatchLimits(quota_pb2.WatchLimitsRequest())
        assert list((await next_limits(watch)).datasets) == []

        first = await stub.SetQuota(
            set_request(dataset="ci", events_per_second=5, retention_seconds=3600)
        )
        assert first.quota.events_per_second == 5
        pushed = await next_limits(watch)
        assert [d.quota for d in pushed.datasets] == [first.quota]

        before = now_us()
        longer = await stub.SetQuota(
            set_request(["retention_seconds"], dataset="ci", retention_seconds=7200)
        )
        after = now_us()
        assert (longer.quota.events_per_second, longer.quota.retention_seconds) == (5, 7200)
        pushed = await next_limits(watch)
        [limits] = pushed.datasets
        assert limits.quota == longer.quota
        # What the old retention let go stays hidden: a replica may have deleted it.
        assert before - HOUR_US <= limits.floor.cutoff_us <= after - HOUR_US
        assert limits.floor.reason == RETENTION
        assert limits.generation == 1

        async def rest_of_stream() -> tuple[Any, grpc.StatusCode]:
            return await watch.read(), await watch.code()

        ended = asyncio.ensure_future(rest_of_stream())
    # The service stopped: the stream ended cleanly, with nothing more.
    assert await ended == (grpc.aio.EOF, grpc.StatusCode.OK)  # type: ignore[attr-defined]

    async with quota_service(broker, topic_prefix) as (_, stub):
        got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))
        assert got.quota == longer.quota
        watch = stub.WatchLimits(quota_pb2.WatchLimitsRequest())
        assert list((await next_limits(watch)).datasets) == [limits]
        usage = await usage_of(stub, "ci")
        assert usage.cutoff == limits.floor and usage.quota == longer.quota
        watch.cancel()


async def test_unknown_datasets_and_bad_limits_change_nothing(
    broker: EmbeddedBroker, topic_prefix: str, catalog: CatalogWriter
) -> None:
    await catalog.write("ci")
    async with quota_service(broker, topic_prefix) as (_, stub):
        await stub.SetQuota(set_request(dataset="ci", retention_seconds=3600))
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.SetQuota(set_request(dataset="nosuch", retention_seconds=3600))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert "nosuch" in str(unknown.value.details())
        for bad in (
            set_request(dataset="ci", retention_seconds=30),
            set_request(["dataset"], dataset="ci"),
            set_request(["bytes_per_second"], dataset="ci", bytes_per_second=-1),
            set_request(dataset="Not A Name"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SetQuota(bad)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))
        assert got.quota == quota_pb2.Quota(dataset="ci", retention_seconds=3600)
        settings = QuotaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=topic_prefix)
        records = await read_quotas(settings)
        assert [key for key, _ in records] == [b"ci"]


async def test_deleted_or_recreated_datasets_lose_their_limits(
    broker: EmbeddedBroker, topic_prefix: str, catalog: CatalogWriter
) -> None:
    for name in ("gone", "again", "kept"):
        await catalog.write(name)
    async with quota_service(broker, topic_prefix, cutoff_interval_s=0.1) as (_, stub):
        for name in ("gone", "again", "kept"):
            await stub.SetQuota(set_request(dataset=name, retention_seconds=3600))
            await stub.SetQuota(set_request(dataset=name, retention_seconds=7200))
        await catalog.write("gone", deleted=True)

        async def forgotten() -> bool:
            got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="gone"))
            return got.quota == quota_pb2.Quota(dataset="gone")

        await eventually_async(forgotten, "limits of a deleted dataset forgotten")
        # Created again: the new dataset starts without the old one's limits and floor.
        await catalog.write("again", generation=2)
        await stub.SetQuota(
            set_request(["events_per_second"], dataset="again", events_per_second=3)
        )
        usage = await usage_of(stub, "again")
        assert usage.quota == quota_pb2.Quota(dataset="again", events_per_second=3)
        assert usage.cutoff.cutoff_us == 0
        await stub.DeleteQuota(quota_pb2.DeleteQuotaRequest(dataset="kept"))
        got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="kept"))
        assert got.quota == quota_pb2.Quota(dataset="kept")

    # Deleted while the service was down: dropped at start.
    await catalog.write("again", generation=2, deleted=True)
    async with quota_service(broker, topic_prefix) as (_, stub):
        response = await next_limits(stub.WatchLimits(quota_pb2.WatchLimitsRequest()))
        assert [d.quota.dataset for d in response.datasets] == []


async def test_a_dataset_created_again_while_quota_was_down_starts_without_limits(
    broker: EmbeddedBroker, topic_prefix: str, catalog: CatalogWriter
) -> None:
    await catalog.write("ci")
    await catalog.write("web", generation=2)
    async with quota_service(broker, topic_prefix) as (_, stub):
        for name in ("ci", "web"):
            await stub.SetQuota(set_request(dataset=name, retention_seconds=3600))
            await stub.SetQuota(set_request(dataset=name, retention_seconds=7200))
        assert (await usage_of(stub, "ci")).cutoff.cutoff_us > 0
    settings = QuotaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=topic_prefix)
    records = dict(await read_quotas(settings))
    for key, generation in ((b"ci", 1), (b"web", 2)):
        value = records[key]
        assert value is not None
        assert quota_pb2.DatasetLimits.FromString(value).generation == generation

    # Deleted and created again, as ingest does, while the service was down.
    await catalog.write("ci", deleted=True)
    await catalog.write("ci", generation=2)
    async with quota_service(broker, topic_prefix) as (_, stub):
        usage = await usage_of(stub, "ci")
        assert usage.quota == quota_pb2.Quota(dataset="ci")
        assert usage.cutoff.cutoff_us == 0
        watch = stub.WatchLimits(quota_pb2.WatchLimitsRequest())
        [web] = (await next_limits(watch)).datasets
        assert (web.quota.dataset, web.quota.retention_seconds, web.generation) == ("web", 7200, 2)
        watch.cancel()
    # The stale record is gone from the topic too, not only skipped.
    records = dict(await read_quotas(settings))
    assert records.get(b"ci") is None


async def test_a_late_delete_quota_leaves_the_limits_of_the_name_created_again(
    broker: EmbeddedBroker, topic_prefix: str, catalog: CatalogWriter
) -> None:
    await catalog.write("ci")
    async with quota_service(broker, topic_prefix) as (_, stub):
        await stub.SetQuota(set_request(dataset="ci", retention_seconds=3600))
        # Deleted and created again before ingest's DeleteQuota of the first one came.
        await catalog.write("ci", deleted=True)
        await catalog.write("ci", generation=2)
        await stub.SetQuota(set_request(dataset="ci", events_per_second=5))
        new = quota_pb2.Quota(dataset="ci", events_per_second=5)
        await stub.DeleteQuota(quota_pb2.DeleteQuotaRequest(dataset="ci", generation=1))
        assert (await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))).quota == new

    async with quota_service(broker, topic_prefix) as (_, stub):
        # Nor were they deleted from the topic.
        assert (await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))).quota == new
        await stub.DeleteQuota(quota_pb2.DeleteQuotaRequest(dataset="ci", generation=2))
        got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))
        assert got.quota == quota_pb2.Quota(dataset="ci")
        # 0: whatever generation.
        await stub.SetQuota(set_request(dataset="ci", events_per_second=5))
        await stub.DeleteQuota(quota_pb2.DeleteQuotaRequest(dataset="ci"))
        got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))
        assert got.quota == quota_pb2.Quota(dataset="ci")
    settings = QuotaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=topic_prefix)
    records = dict(await read_quotas(settings))
    assert records.get(b"ci") is None


SEGMENT_SPAN_US = 1000
SEGMENT_ROWS = 10


def segment(max_ts: int, size: int) -> quota_pb2.SegmentUsage:
    """A segment of SEGMENT_ROWS events over the SEGMENT_SPAN_US up to `max_ts`."""
    return quota_pb2.SegmentUsage(max_timestamp_us=max_ts, bytes=size)


def partition(
    segments: list[quota_pb2.SegmentUsage], dataset: str = "ci", generation: int = 0
) -> quota_pb2.PartitionUsage:
    return quota_pb2.PartitionUsage(
        dataset=dataset,
        partition=0,
        bytes=sum(s.bytes for s in segments),
        rows=SEGMENT_ROWS * len(segments),
        segments=segments,
        min_timestamp_us=min(s.max_timestamp_us for s in segments) - SEGMENT_SPAN_US,
        max_timestamp_us=max(s.max_timestamp_us for s in segments),
        generation=generation,
    )


async def test_past_the_stored_bytes_limit_the_floor_moves_and_storage_learns_it(
    broker: EmbeddedBroker, topic_prefix: str, catalog: CatalogWriter
) -> None:
    await catalog.write("ci")
    old = now_us() - 10 * HOUR_US
    segments = [segment(old + i * HOUR_US, 60) for i in range(3)]  # 180 bytes, all > 1 h old
    settings = {"cutoff_interval_s": 0.1, "drop_grace_s": 0.3}
    async with quota_service(broker, topic_prefix, **settings) as (app, stub):
        await stub.SetQuota(set_request(dataset="ci", max_stored_bytes=100))
        report = quota_pb2.ReportUsageRequest(node_id="n1", partitions=[partition(segments)])
        answer = await stub.ReportUsage(report)
        # A smaller replica of the same partition: logical usage is the larger one.
        await stub.ReportUsage(
            quota_pb2.ReportUsageRequest(node_id="n2", partitions=[partition(segments[1:])])
        )
        assert list(answer.drops) == []
        expected = segments[1].max_timestamp_us + 1  # the two oldest go: 60 bytes left

        async def floor_moved() -> quota_pb2.DatasetUsage | None:
            usage = await usage_of(stub, "ci")
            return usage if usage.cutoff.cutoff_us else None

        usage = await eventually_async(floor_moved, "floor moved by the stored-bytes limit")
        assert usage.cutoff == quota_pb2.Cutoff(cutoff_us=expected, reason=STORED)
        assert (usage.bytes, usage.rows, usage.replica_bytes) == (180, 30, 300)
        assert usage.oldest_us == segments[0].max_timestamp_us - SEGMENT_SPAN_US
        assert usage.newest_us == segments[2].max_timestamp_us
        assert app.registry.get_sample_value(
            "flakehouse_quota_cutoff_timestamp_seconds", {"dataset": "ci"}
        ) == pytest.approx(expected / US)
        assert app.registry.get_sample_value(
            "flakehouse_quota_usage_ratio", {"dataset": "ci", "limit": "max_stored_bytes"}
        ) == pytest.approx(1.8)

        async def drops() -> list[quota_pb2.DropBound]:
            return list((await stub.ReportUsage(report)).drops)

        # Storage learns the floor once query processes have had it for the grace.
        bounds = await eventually_async(drops, "drop bound")
        assert bounds == [
            quota_pb2.DropBound(dataset="ci", before_us=expected, reason=STORED, generation=1)
        ]

    # The floor is durable: it holds after a restart even before any report.
    async with quota_service(broker, topic_prefix) as (_, stub):
        usage = await usage_of(stub, "ci")
        assert usage.cutoff == quota_pb2.Cutoff(cutoff_us=expected, reason=STORED)


async def test_drop_bounds_only_for_the_live_generation(
    broker: EmbeddedBroker,
    topic_prefix: str,
    catalog: CatalogWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await catalog.write("ci")
    await catalog.write("web", generation=3)
    settings = {"cutoff_interval_s": 0.1, "drop_grace_s": 0}
    async with quota_service(broker, topic_prefix, **settings) as (_, stub):
        for name in ("ci", "web"):
            await stub.SetQuota(set_request(dataset=name, retention_seconds=3600))
        report = quota_pb2.ReportUsageRequest(node_id="n1")

        async def bounds() -> list[tuple[str, int, int]]:
            drops = (await stub.ReportUsage(report)).drops
            return [(d.dataset, d.generation, d.reason) for d in drops]

        assert await bounds() == [("ci", 1, RETENTION), ("web", 3, RETENTION)]

        # Deleted, and its limits cannot be forgotten (Kafka refuses the tombstone).
        tried = asyncio.Event()

        async def refuse(store: LimitsStore, dataset: str) -> None:
            tried.set()
            raise Unavailable(f"the limits of {dataset!r} could not be stored")

        monkeypatch.setattr(LimitsStore, "delete", refuse)
        await catalog.write("ci", deleted=True)
        for _ in range(2):  # deleted, then created again
            # The second try comes from a round that read the catalog after the write.
            for _ in range(2):
                tried.clear()
                await asyncio.wait_for(tried.wait(), timeout=10)
            got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))
            assert got.quota.retention_seconds == 3600  # still there...
            assert await bounds() == [("web", 3, RETENTION)]  # ...but drops nothing
            await catalog.write("ci", generation=2)


async def test_reports_of_a_deleted_generation_do_not_count(
    broker: EmbeddedBroker, topic_prefix: str, catalog: CatalogWriter
) -> None:
    await catalog.write("ci", generation=1, deleted=True)
    await catalog.write("ci", generation=2)
    old = now_us() - 10 * HOUR_US
    deleted = [segment(old + i * HOUR_US, 60) for i in range(3)]
    live = [segment(old + 5 * HOUR_US, 50)]
    async with quota_service(broker, topic_prefix, cutoff_interval_s=0.1) as (_, stub):
        await stub.SetQuota(set_request(dataset="ci", max_stored_bytes=100))
        # n1 has not swept the first dataset's partition yet; n2 holds the new one's.
        for node, part in (
            ("n1", partition(deleted, generation=1)),
            ("n2", partition(live, generation=2)),
        ):
            await stub.ReportUsage(quota_pb2.ReportUsageRequest(node_id=node, partitions=[part]))
        await asyncio.sleep(0.5)  # a few rounds, each of which could move the floor
        usage = await usage_of(stub, "ci")
        assert (usage.bytes, usage.replica_bytes, usage.rows) == (50, 50, SEGMENT_ROWS)
        assert usage.oldest_us == live[0].max_timestamp_us - SEGMENT_SPAN_US
        assert usage.cutoff.cutoff_us == 0


async def test_query_slots_across_holders(
    broker: EmbeddedBroker,
    topic_prefix: str,
    catalog: CatalogWriter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="flakehouse.quota.quotas")
    await catalog.write("ci")
    async with quota_service(broker, topic_prefix, query_slot_wait_ms=200) as (app, stub):
        await stub.SetQuota(set_request(dataset="ci", max_concurrent_queries=1))

        def ask(holder: str) -> Any:
            return stub.AcquireQuerySlot(
                quota_pb2.AcquireQuerySlotRequest(dataset="ci", holder=holder, hold_ms=30_000)
            )

        first = await ask("q1")
        assert first.slot_id
        started = time.monotonic()
        second = await ask("q2")
        assert not second.slot_id and 100 <= second.retry_after_ms <= 5000
        assert time.monotonic() - started >= 0.2  # it waited for a slot first
        assert (await usage_of(stub, "ci")).running_queries == 1
        refusals = app.registry.get_sample_value(
            "flakehouse_quota_refusals_total", {"dataset": "ci", "kind": "query_concurrency"}
        )
        assert refusals == 1
        # The holder is for the logs: which query process got a slot, which was refused.
        logged = [
            (r.levelno, r.getMessage(), getattr(r, "holder", None), getattr(r, "running", None))
            for r in caplog.records
            if r.name == "flakehouse.quota.quotas" and "query slot" in r.getMessage()
        ]
        assert logged == [
            (logging.DEBUG, "query slot granted", "q1", 1),
            (logging.INFO, "query slot refused", "q2", 1),
        ]

        waiting = asyncio.ensure_future(ask("q3"))
        await asyncio.sleep(0.05)
        await stub.ReleaseQuerySlot(
            quota_pb2.ReleaseQuerySlotRequest(dataset="ci", slot_id=first.slot_id)
        )
        third = await waiting
        assert third.slot_id

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.AcquireQuerySlot(quota_pb2.AcquireQuerySlotRequest(dataset="ci"))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_leases_give_ingest_rates_and_refusals(
    broker: EmbeddedBroker, topic_prefix: str, catalog: CatalogWriter
) -> None:
    await catalog.write("ci")
    async with quota_service(broker, topic_prefix, burst_s=1) as (app, stub):
        await stub.SetQuota(set_request(dataset="ci", events_per_second=60, bytes_per_second=6000))

        def lease(events: int, size: int) -> Any:
            return stub.AcquireLease(
                quota_pb2.AcquireLeaseRequest(dataset="ci", holder="i1", events=events, bytes=size)
            )

        granted = await lease(120, 600)
        assert granted.granted_events == 120
        refused = await lease(1, 1)  # 60 events of debt at 60/s
        assert refused.retry_after_ms > 500 and not refused.granted_events
        usage = await usage_of(stub, "ci")
        assert usage.events_per_second == pytest.approx(2.0)
        assert usage.bytes_per_second == pytest.approx(10.0)
        labels = {"dataset": "ci", "kind": "ingest_rate"}
        assert app.registry.get_sample_value("flakehouse_quota_refusals_total", labels) == 1


async def test_limits_from_before_the_catalog_and_floors_still_load(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    settings = QuotaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=topic_prefix)
    await read_quotas(settings)  # creates the topic
    producer = make_producer(KafkaConnection(broker.bootstrap), "test")
    await producer.start()
    legacy = quota_pb2.Quota(dataset="old", events_per_second=2)
    await producer.send_and_wait(quotas_topic(topic_prefix), legacy.SerializeToString(), key=b"old")
    await producer.stop()
    # An empty catalog was never written: it does not say the dataset is gone.
    async with quota_service(broker, topic_prefix, cutoff_interval_s=0.1) as (_, stub):
        await asyncio.sleep(1.5)  # a few rounds (each reads the catalog first)
        got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="old"))
        assert got.quota == legacy
