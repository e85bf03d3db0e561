"""Produces an upload's record file to its dataset's topic, reading it back a few records at a
time, and answers only once Kafka acknowledged every record (acks=all).

Memory stays bounded: aiokafka's accumulator holds at most one pending batch per partition
(send() waits while it is full), and the upload id as key keeps an upload in one partition.
The wait is bounded per record, not per upload, so a large upload is not cut short while Kafka
keeps acknowledging; a Kafka that stops answering gives UNAVAILABLE with a retry delay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

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

    async def produce(
        self, topic: str, key: str, records_path: Path, on_acked: Callable[[int], None]
    ) -> dict[int, int]:
        """The last offset written in each partition; on_acked is called with the events of
        each record Kafka acknowledged."""
        reader = await asyncio.to_thread(RecordReader, records_path)
        pending: list[asyncio.Future[Any]] = []
        try:
            while records := await asyncio.to_thread(reader.next_many, READ_AHEAD):
                for payload, events in records:
                    future = await asyncio.wait_for(
                        self._producer.send(topic, payload, key=key.encode()), self._timeout_s
                    )
                    future.add_done_callback(self._counter(events, on_acked))
                    pending.append(future)
            acknowledged = await self._acknowledged(pending)
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(
                f"Kafka did not acknowledge the upload ({type(exc).__name__}); "
                "retrying with the same upload id never counts twice",
                retry_after_ms=KAFKA_RETRY_MS,
            ) from None
        finally:
            await asyncio.to_thread(reader.close)
        offsets: dict[int, int] = {}
        for meta in acknowledged:
            offsets[meta.partition] = max(offsets.get(meta.partition, -1), meta.offset)
        return offsets

    async def _acknowledged(self, pending: list[asyncio.Future[Any]]) -> list[Any]:
        """Waits for every acknowledgement, each within the timeout of the one before."""
        results = []
        for future in pending:
            results.append(await asyncio.wait_for(asyncio.shield(future), self._timeout_s))
        return results

    def _counter(
        self, events: int, on_acked: Callable[[int], None]
    ) -> Callable[[asyncio.Future[Any]], None]:
        def count(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None:
                self._metrics.records_produced.inc()
                self._metrics.events.inc(events)
                on_acked(events)

        return count
