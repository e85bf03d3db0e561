"""Dataset lifecycle on the catalog (DESIGN.md §7): a dataset is a live record of the catalog
topic, naming the Kafka topic of its generation; a topic the catalog does not name is not one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from flakehouse.common.v1 import datasets_pb2
from flakehouse.core.authn import require
from flakehouse.core.catalog import Catalog, CatalogReader, generation_topic
from flakehouse.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from flakehouse.core.grants import Role
from flakehouse.core.kafka import KafkaAdmin
from flakehouse.core.limit_rules import QUOTA_FIELDS, validate_quota
from flakehouse.core.quota_client import QuotaClient
from flakehouse.events.model import validate_dataset_name
from flakehouse.ingest.retention import retention_configs
from flakehouse.ingest.retention_follower import RetentionFollower
from flakehouse.ingest.v1 import ingest_pb2
from flakehouse.quota.v1 import quota_pb2

log = logging.getLogger(__name__)

KAFKA_RETRY_MS = 1000
# An upload to a dataset this process knows to be live trusts a catalog synced up to this long
# ago (a sync takes two fetch round trips): an upload within that time of a delete made by
# another ingest process may still land in the deleted dataset, and goes with it.
UPLOAD_CATALOG_AGE_S = 1.0


def checked_name(name: str) -> str:
    try:
        return validate_dataset_name(name)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def creating(name: str) -> Callable[[], None]:
    """What an upload checks before its dataset is created on first use: creating one takes
    admin on it, write alone does not."""

    def check() -> None:
        require(Role.ADMIN, name, "to create it on first upload: it does not exist yet")

    return check


def has_limits(limits: quota_pb2.Quota) -> bool:
    return any(getattr(limits, name) for name in QUOTA_FIELDS)


def dataset_message(record: datasets_pb2.DatasetRecord) -> ingest_pb2.Dataset:
    return ingest_pb2.Dataset(
        name=record.name,
        topic=record.topic,
        partitions=record.partitions,
        generation=record.generation,
        created_us=record.created_us,
    )


def retired_topics(prefix: str, records: Iterable[datasets_pb2.DatasetRecord]) -> list[str]:
    """The topic of every generation that is no longer live: those before each name's latest
    record, and the latest one's when it is deleted."""
    topics: list[str] = []
    for record in records:
        last = record.generation if record.deleted_us else record.generation - 1
        topics.extend(generation_topic(prefix, record.name, g) for g in range(1, last + 1))
    return topics


@contextlib.asynccontextmanager
async def kafka_call(timeout_s: float) -> AsyncIterator[None]:
    """Bounds a Kafka call and turns its failure into UNAVAILABLE with a retry delay."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except (KafkaError, TimeoutError) as exc:
        raise Unavailable(
            f"Kafka is unavailable ({type(exc).__name__})", retry_after_ms=KAFKA_RETRY_MS
        ) from None


class Datasets:
    def __init__(
        self,
        admin: KafkaAdmin,
        catalog: CatalogReader,
        producer: AIOKafkaProducer,
        quota: QuotaClient,
        retention: RetentionFollower,
        *,
        prefix: str,
        default_partitions: int,
        timeout_s: float,
    ) -> None:
        self._admin = admin
        self._catalog = catalog
        self._producer = producer
        self._quota = quota
        self._retention = retention
        self._prefix = prefix
        self._default_partitions = default_partitions
        self._timeout_s = timeout_s
        # One change at a time in this process: two uploads racing to create a dataset must
        # agree on its generation.
        self._lock = asyncio.Lock()

    async def _synced(self) -> Catalog:
        async with kafka_call(self._timeout_s):
            return await self._catalog.sync()

    async def create(
        self,
        name: str,
        partitions: int = 0,
        limits: quota_pb2.Quota | None = None,
        may_create: Callable[[], None] = lambda: None,
    ) -> tuple[ingest_pb2.Dataset, bool]:
        """The live dataset of this name, created (with `limits`) if there is none; True when
        created. An existing one keeps its limits. `may_create` raises when the caller may not
        create it (an upload's token that may write but not create)."""
        name = checked_name(name)
        limits = limits if limits is not None else quota_pb2.Quota()
        validate_quota(limits)
        # Uploads to an existing dataset (nearly all) do not wait for each other, nor for a
        # catalog sync of their own: one begun within UPLOAD_CATALOG_AGE_S will do.
        existing = await self._existing(name, partitions, UPLOAD_CATALOG_AGE_S)
        if existing is not None:
            return existing, False
        async with self._lock:
            existing = await self._existing(name, partitions)  # created by a racing call
            if existing is not None:
                return existing, False
            may_create()
            if has_limits(limits) and self._quota.stub is None:
                raise FailedPrecondition(
                    "limits need the quota service, and this ingest has no quota_address"
                )
            record = await self._create(name, partitions or self._default_partitions, limits)
            if has_limits(limits):
                try:
                    await self._quota.set_limits(name, limits)
                except Exception:
                    # A dataset without the limits asked for would keep them unset for good (a
                    # retry finds it existing): undo, so that a retry starts afresh.
                    await self._retire(record)
                    raise
        log.info(
            "dataset created",
            extra={"dataset": name, "generation": record.generation, "topic": record.topic},
        )
        return dataset_message(record), True

    async def _existing(
        self, name: str, partitions: int, max_age_s: float = 0.0
    ) -> ingest_pb2.Dataset | None:
        """The live dataset of the name, from a catalog synced now, or, for a name live in a
        catalog synced at most `max_age_s` ago, from that one."""
        live = self._catalog.catalog.live(name) if max_age_s else None
        if live is not None:
            async with kafka_call(self._timeout_s):
                live = (await self._catalog.recent(max_age_s)).live(name)
        if live is None:
            live = (await self._synced()).live(name)
        if live is None:
            return None
        if partitions and live.partitions != partitions:
            raise AlreadyExists(
                f"dataset {name!r} exists with {live.partitions} partitions, not {partitions}"
            )
        return dataset_message(live)

    async def _create(
        self, name: str, partitions: int, limits: quota_pb2.Quota
    ) -> datasets_pb2.DatasetRecord:
        """A new generation: its topic, then its catalog record (which makes it a dataset)."""
        generation = self._catalog.catalog.next_generation(name)
        topic = generation_topic(self._prefix, name, generation)
        async with kafka_call(self._timeout_s):
            # A topic already there is one a creation left behind before its record was written.
            await self._admin.create_topic(
                topic, partitions, configs=retention_configs(limits.retention_seconds)
            )
            counts = await self._admin.partition_counts([topic])
            record = datasets_pb2.DatasetRecord(
                name=name,
                generation=generation,
                topic=topic,
                partitions=counts[topic],
                created_us=time.time_ns() // 1000,
            )
            await self._catalog.write(self._producer, record)
        await self._confirm(record)
        self._retention.created(topic, limits.retention_seconds)
        return record

    async def _confirm(self, record: datasets_pb2.DatasetRecord) -> None:
        """Raises FailedPrecondition unless the record just written is the live one: another
        ingest process may have deleted the dataset meanwhile (or deleted it and created a newer
        generation), and the catalog keeps theirs (Catalog.apply)."""
        winner = self._catalog.catalog.records.get(record.name)
        if winner is not None and winner.generation == record.generation and not winner.deleted_us:
            return
        if winner is not None:
            # Ours may now be the last record of the name in the topic, the one compaction
            # keeps: the winner written again stays the catalog once compacted.
            async with kafka_call(self._timeout_s):
                await self._catalog.write(self._producer, winner)
        await self._delete_topic(record.topic)
        raise FailedPrecondition(f"dataset {record.name!r} was deleted while being created; retry")

    async def get(self, name: str) -> ingest_pb2.Dataset:
        name = checked_name(name)
        live = (await self._synced()).live(name)
        if live is None:
            raise NotFound(f"dataset {name!r} does not exist")
        return dataset_message(live)

    async def list(self) -> list[ingest_pb2.Dataset]:
        return [dataset_message(r) for r in (await self._synced()).live_records()]

    async def delete(self, name: str) -> ingest_pb2.Dataset:
        """Deletes the live dataset of this name: its record first (from then on it is gone,
        and the storage nodes delete its data), then its topic and its limits."""
        name = checked_name(name)
        async with self._lock:
            live = (await self._synced()).live(name)
            if live is None:
                raise NotFound(f"dataset {name!r} does not exist")
            await self._retire(live)
        await self._quota.delete_limits(name, live.generation)
        log.info("dataset deleted", extra={"dataset": name, "generation": live.generation})
        return dataset_message(live)

    async def _retire(self, record: datasets_pb2.DatasetRecord) -> None:
        retired = datasets_pb2.DatasetRecord()
        retired.CopyFrom(record)
        retired.deleted_us = time.time_ns() // 1000
        async with kafka_call(self._timeout_s):
            await self._catalog.write(self._producer, retired)
        self._retention.forget(record.topic)
        await self._delete_topic(record.topic)

    async def _delete_topic(self, topic: str) -> None:
        """Deletes a retired generation's topic, best effort: the dataset is gone already (its
        record says so), the topic is only space."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._admin.delete_topic(topic)
        except (KafkaError, TimeoutError) as exc:
            log.warning(
                "could not delete a deleted dataset's topic; removed at the next start",
                extra={"topic": topic, "error": type(exc).__name__},
            )

    async def remove_retired_topics(self) -> None:
        """Deletes the topics of retired generations that are still there (a delete whose topic
        deletion failed). Best effort, in the background of the start: a topic left is only
        space, and must not keep ingest from serving."""
        try:
            retired = retired_topics(self._prefix, (await self._synced()).records.values())
            async with kafka_call(self._timeout_s):
                present = list(await self._admin.partition_counts(retired))
        except Unavailable as exc:
            log.warning(
                "could not look for deleted datasets' topics; tried again at the next start",
                extra={"error": exc.message},
            )
            return
        for topic in present:
            log.info("deleting a deleted dataset's topic", extra={"topic": topic})
            await self._delete_topic(topic)
