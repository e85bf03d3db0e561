"""Composition root of the ingest service: Kafka admin and producer, quota leases, server."""

from __future__ import annotations

import asyncio
import socket

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from flakehouse.core.errors import Unavailable
from flakehouse.core.kafka import KafkaAdmin, make_producer
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.ingest.api import IngestApi
from flakehouse.ingest.datasets import Datasets
from flakehouse.ingest.leases import Leases
from flakehouse.ingest.metrics import IngestMetrics
from flakehouse.ingest.settings import IngestSettings
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc

KAFKA_RETRY_MS = 1000


class IngestApp:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.failed = asyncio.Event()
        self.registry = CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        self.admin = KafkaAdmin(settings.kafka_bootstrap, "flakehouse-ingest")
        self.producer = make_producer(settings.kafka_bootstrap, "flakehouse-ingest")
        self.leases = Leases(
            settings.quota_address, f"ingest@{socket.gethostname()}", self.metrics.quota_unchecked
        )
        datasets = Datasets(self.admin, settings.topic_prefix, settings.default_partitions)
        self.server = GrpcServer("ingest", settings, self.registry)
        self.server.add(
            ingest_pb2_grpc.add_IngestServiceServicer_to_server,
            IngestApi(settings, datasets, self.leases, self.produce, self.metrics),
            service_name(ingest_pb2.DESCRIPTOR, "IngestService"),
        )

    async def start(self) -> None:
        await self.admin.start()
        await self.producer.start()
        await self.server.start()
        await self.server.set_serving(True)

    async def produce(self, topic: str, key: str, records: list[bytes]) -> dict[int, int]:
        """Sends every record and waits for all acknowledgements; the last offset written in
        each partition. The key (the upload id) keeps one upload in one partition."""
        try:
            async with asyncio.timeout(self.settings.produce_timeout_s):
                pending = [
                    await self.producer.send(topic, record, key=key.encode()) for record in records
                ]
                acknowledged = await asyncio.gather(*pending)
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(
                f"Kafka did not acknowledge the upload ({type(exc).__name__}); "
                "it can be retried safely with the same upload id",
                retry_after_ms=KAFKA_RETRY_MS,
            ) from None
        offsets: dict[int, int] = {}
        for meta in acknowledged:
            offsets[meta.partition] = max(offsets.get(meta.partition, -1), meta.offset)
        return offsets

    async def stop(self) -> None:
        await self.server.stop()
        await self.producer.stop()
        await self.leases.close()
        await self.admin.close()
