"""The dataset catalog: the compacted topic `<prefix>.__datasets` that says which incarnation of
each dataset name is live and which topic holds it. Ingest writes it; replication, quota and
ingest read it with a CatalogReader, which keeps a consumer and reads only what is new."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from flakehouse.common.v1 import datasets_pb2
from flakehouse.core.kafka import INTERNAL_MARK, KafkaAdmin, KafkaConnection, make_consumer
from flakehouse.core.settings import KafkaSettings


def catalog_topic(prefix: str) -> str:
    return f"{prefix}.{INTERNAL_MARK}datasets"


def generation_topic(prefix: str, name: str, generation: int) -> str:
    """`<prefix>.<name>` for the first incarnation of a name (DESIGN.md §3), then
    `<prefix>.<name>.<generation>`: a name created again gets a topic of its own, even while
    Kafka is still deleting the old one. Dataset names hold no dots, so these never collide."""
    base = f"{prefix}.{name}"
    return base if generation <= 1 else f"{base}.{generation}"


def supersedes(
    record: datasets_pb2.DatasetRecord, known: datasets_pb2.DatasetRecord | None
) -> bool:
    """Whether `record` replaces `known`, the record of its name read so far. A late write of a
    racing creator never undoes what is newer: a record of an older generation never wins, and
    at the same generation a live record never brings back a deleted one. A live record of a
    higher generation does: the name created again. Every reader so ends up with the same
    catalog, whatever order it read the records in."""
    if known is None or record.generation > known.generation:
        return True
    if record.generation < known.generation:
        return False
    return bool(record.deleted_us) or not known.deleted_us


@dataclass
class Catalog:
    """The latest record of every dataset name, live or deleted."""

    records: dict[str, datasets_pb2.DatasetRecord] = field(default_factory=dict)

    def apply(self, record: datasets_pb2.DatasetRecord) -> None:
        if supersedes(record, self.records.get(record.name)):
            self.records[record.name] = record

    def live(self, name: str) -> datasets_pb2.DatasetRecord | None:
        record = self.records.get(name)
        return record if record is not None and not record.deleted_us else None

    def live_records(self) -> list[datasets_pb2.DatasetRecord]:
        return sorted((r for r in self.records.values() if not r.deleted_us), key=lambda r: r.name)

    def deleted_records(self) -> list[datasets_pb2.DatasetRecord]:
        return sorted((r for r in self.records.values() if r.deleted_us), key=lambda r: r.name)

    def next_generation(self, name: str) -> int:
        known = self.records.get(name)
        return known.generation + 1 if known is not None else 1


class CatalogReader:
    """Follows the catalog topic: `sync()` reads everything appended before it was called, so a
    reader sees every write that was acknowledged before.

    The end of the topic is learnt from fetch responses, not from ListOffsets, which tansu
    answers short of the end (kafka.read_to_end), for good when the last records were written
    within the same second. A sync waits for a fetch response to a request sent after it began:
    the second response after resuming (the first may answer a request sent before), which the
    broker holds at most FETCH_WAIT_MS when there is nothing new. Concurrent syncs share one
    round: a caller is served by any round that began after its call."""

    FETCH_WAIT_MS = 20

    def __init__(self, settings: KafkaSettings, kafka: KafkaConnection, client_id: str) -> None:
        self._settings = settings
        self._kafka = kafka
        self._client_id = client_id
        self.topic = catalog_topic(settings.topic_prefix)
        self._tp = TopicPartition(self.topic, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        # When (time.monotonic()) the last completed round began.
        self._round_began = float("-inf")
        self.catalog = Catalog()

    async def start(self) -> None:
        admin = KafkaAdmin.for_settings(self._settings, self._kafka, self._client_id)
        await admin.start()
        try:
            await admin.create_topic(self.topic, 1, compact=True)
        finally:
            await admin.close()
        self._consumer = make_consumer(
            self._kafka, self._client_id, fetch_wait_ms=self.FETCH_WAIT_MS
        )
        await self._consumer.start()
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_beginning(self._tp)
        self._consumer.pause(self._tp)
        await self.sync()

    async def sync(self, at_least: int = 0) -> Catalog:
        """Reads what was appended before this call (and at least up to offset `at_least`, a
        write of this process) and returns the catalog."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        called = time.monotonic()
        async with self._lock:
            if self._round_began < called or await consumer.position(self._tp) < at_least:
                began = time.monotonic()
                await self._read_to_fetched_end(consumer, at_least)
                self._round_began = began
        return self.catalog

    async def recent(self, max_age_s: float) -> Catalog:
        """The catalog as a sync that began at most `max_age_s` ago left it, else synced now:
        for a hot path that may miss a change of the last moment (another process's)."""
        if time.monotonic() - self._round_began <= max_age_s:
            return self.catalog
        return await self.sync()

    async def _read_to_fetched_end(self, consumer: AIOKafkaConsumer, at_least: int) -> None:
        # Paused between syncs: a fetch parked on the broker would only hold the connection.
        consumer.resume(self._tp)
        try:
            responses, last_seen = 0, consumer.last_poll_timestamp(self._tp)
            while True:
                batch = await consumer.getmany(self._tp, timeout_ms=self.FETCH_WAIT_MS * 5)
                for message in batch.get(self._tp, []):
                    if message.value is not None:
                        self.catalog.apply(datasets_pb2.DatasetRecord.FromString(message.value))
                polled = consumer.last_poll_timestamp(self._tp)
                if polled is not None and polled != last_seen:
                    responses, last_seen = responses + 1, polled
                end = consumer.highwater(self._tp)
                position = await consumer.position(self._tp)
                if responses >= 2 and end is not None and position >= max(end, at_least):
                    return
        finally:
            consumer.pause(self._tp)

    async def write(self, producer: AIOKafkaProducer, record: datasets_pb2.DatasetRecord) -> None:
        """Appends a record (acknowledged by Kafka on return) and reads it back."""
        written = await producer.send_and_wait(
            self.topic, record.SerializeToString(), key=record.name.encode()
        )
        await self.sync(at_least=written.offset + 1)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
