"""Dataset lifecycle: one Kafka topic per dataset, created with its final partition count."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka.errors import KafkaError

from flakehouse.core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from flakehouse.core.kafka import KafkaAdmin, dataset_of_topic, dataset_topic
from flakehouse.events.model import validate_dataset_name
from flakehouse.ingest.v1 import ingest_pb2

KAFKA_RETRY_MS = 1000


def checked_name(name: str) -> str:
    try:
        return validate_dataset_name(name)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


@contextlib.asynccontextmanager
async def kafka_call(timeout_s: float) -> AsyncIterator[None]:
    """Bounds a Kafka admin call and turns its failure into UNAVAILABLE with a retry delay."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except (KafkaError, TimeoutError) as exc:
        raise Unavailable(
            f"Kafka is unavailable ({type(exc).__name__})", retry_after_ms=KAFKA_RETRY_MS
        ) from None


class Datasets:
    def __init__(
        self, admin: KafkaAdmin, prefix: str, default_partitions: int, timeout_s: float
    ) -> None:
        self._admin = admin
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._default_partitions = default_partitions
        self._known: dict[str, int] = {}
        # One creation at a time: two uploads racing to create a dataset must agree on it.
        self._create_lock = asyncio.Lock()

    def _message(self, name: str, partitions: int) -> ingest_pb2.Dataset:
        return ingest_pb2.Dataset(
            name=name, topic=dataset_topic(self._prefix, name), partitions=partitions
        )

    async def partitions(self, name: str) -> int | None:
        if name not in self._known:
            topic = dataset_topic(self._prefix, name)
            async with kafka_call(self._timeout_s):
                counts = await self._admin.partition_counts([topic])
            if topic in counts:
                self._known[name] = counts[topic]
        return self._known.get(name)

    async def create(self, name: str, partitions: int = 0) -> tuple[ingest_pb2.Dataset, bool]:
        name = checked_name(name)
        wanted = partitions or self._default_partitions
        async with self._create_lock:
            existing = await self.partitions(name)
            if existing is not None:
                if partitions and existing != partitions:
                    raise AlreadyExists(
                        f"dataset {name!r} exists with {existing} partitions, not {partitions}"
                    )
                return self._message(name, existing), False
            topic = dataset_topic(self._prefix, name)
            async with kafka_call(self._timeout_s):
                created = await self._admin.create_topic(topic, wanted)
                counts = await self._admin.partition_counts([topic])
            self._known[name] = counts[topic]
            return self._message(name, self._known[name]), created

    async def get(self, name: str) -> ingest_pb2.Dataset:
        name = checked_name(name)
        partitions = await self.partitions(name)
        if partitions is None:
            raise NotFound(f"dataset {name!r} does not exist")
        return self._message(name, partitions)

    async def list(self) -> list[ingest_pb2.Dataset]:
        async with kafka_call(self._timeout_s):
            counts = await self._admin.partition_counts()
        found = {
            dataset: partitions
            for topic, partitions in counts.items()
            if (dataset := dataset_of_topic(self._prefix, topic)) is not None
        }
        self._known = found
        return [self._message(name, n) for name, n in sorted(found.items())]

    async def delete(self, name: str) -> None:
        dataset = await self.get(name)
        async with kafka_call(self._timeout_s):
            await self._admin.delete_topic(dataset.topic)
        self._known.pop(dataset.name, None)
