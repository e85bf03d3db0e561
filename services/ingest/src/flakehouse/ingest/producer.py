"""Produces an upload's record file to its dataset's topic, reading it back a few records at a
time, and answers only once Kafka acknowledged every record (acks=all).

Memory stays bounded: aiokafka's accumulator holds at most one pending batch per partition
(send() waits while it is full), and the upload id as key keeps an upload in one partition.
The wait is bounded per record, not per upload, so a large upload is not cut short while Kafka
keeps acknowledging; a Kafka that stops answering gives UNAVAILABLE with a retry delay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from flakehouse.core.cluster_identity import ORIGIN_HEADER
from flakehouse.core.errors import Unavailable
from flakehouse.ingest.datasets import KAFKA_RETRY_MS
from flakehouse.ingest.metrics import IngestMetrics
from flakehouse.ingest.uploads import RecordReader

READ_AHEAD = 8


class RecordProducer:
    def __init__(self, producer: AIOKafkaProducer, timeout_s: float, metrics: IngestMetrics):
        self._producer = producer
        self._timeout_s = timeout_s
        self._metrics = metrics
        # The cluster the records' events are ingested in (set once ingest knows its id): the
        # `origin` header every record carries, which links read (flakehouse.ingest.changes).
        self.origin = ""

    async def produce(
        self, topic: str, key: str, records_path: Path, on_acked: Callable[[int], None]
    ) -> dict[int, int]:
        """The last offset written in each partition; on_acked is called with the events of
        each record Kafka acknowledged."""
        reader = await asyncio.to_thread(RecordReader, records_path)
        pending: list[asyncio.Future[Any]] = []
        try:
            with _unavailable_without_kafka():
                while records := await asyncio.to_thread(reader.next_many, READ_AHEAD):
                    for payload, events in records:
                        pending.append(await self._send(topic, key, payload, events, on_acked))
                acknowledged = await self._acknowledged(pending)
        finally:
            await asyncio.to_thread(reader.close)
        return last_offsets((meta.partition, meta.offset) for meta in acknowledged)

    async def produce_many(
        self, topic: str, records: Sequence[tuple[str, bytes, int]]
    ) -> list[tuple[int, int]]:
        """(key, payload, events) records of several uploads, sent at once (aiokafka puts those
        of one partition in one batch, which is what makes many small uploads cheap); the
        (partition, offset) of each, in order, once Kafka acknowledged them all."""
        with _unavailable_without_kafka():
            pending = [
                await self._send(topic, key, payload, events, None)
                for key, payload, events in records
            ]
            acknowledged = await self._acknowledged(pending)
        return [(meta.partition, meta.offset) for meta in acknowledged]

    async def _send(
        self,
        topic: str,
        key: str,
        payload: bytes,
        events: int,
        on_acked: Callable[[int], None] | None,
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await asyncio.wait_for(
            self._producer.send(
                topic,
                payload,
                key=key.encode(),
                headers=[(ORIGIN_HEADER, self.origin.encode())] if self.origin else None,
            ),
            self._timeout_s,
        )
        future.add_done_callback(self._counter(events, on_acked))
        return future

    async def _acknowledged(self, pending: list[asyncio.Future[Any]]) -> list[Any]:
        """Waits for every acknowledgement, each within the timeout of the one before."""
        results = []
        for future in pending:
            results.append(await asyncio.wait_for(asyncio.shield(future), self._timeout_s))
        return results

    def _counter(
        self, events: int, on_acked: Callable[[int], None] | None
    ) -> Callable[[asyncio.Future[Any]], None]:
        def count(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None:
                self._metrics.records_produced.inc()
                self._metrics.events.inc(events)
                if on_acked is not None:
                    on_acked(events)

        return count


def last_offsets(landed: Iterable[tuple[int, int]]) -> dict[int, int]:
    """The last offset written in each partition, of records' (partition, offset)."""
    offsets: dict[int, int] = {}
    for partition, offset in landed:
        offsets[partition] = max(offsets.get(partition, -1), offset)
    return offsets


@contextmanager
def _unavailable_without_kafka() -> Iterator[None]:
    try:
        yield
    except (KafkaError, TimeoutError) as exc:
        raise Unavailable(
            f"Kafka did not acknowledge the upload ({type(exc).__name__}); "
            "retrying with the same upload id never counts twice",
            retry_after_ms=KAFKA_RETRY_MS,
        ) from None
