"""Composition root of the ingest service: Kafka admin and producer, quota leases, server."""

from __future__ import annotations

import asyncio
import logging
import socket

from prometheus_client import CollectorRegistry

from flakehouse.core.kafka import KafkaAdmin, make_producer
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.ingest.api import IngestApi
from flakehouse.ingest.datasets import Datasets
from flakehouse.ingest.leases import Leases
from flakehouse.ingest.metrics import IngestMetrics
from flakehouse.ingest.producer import RecordProducer
from flakehouse.ingest.settings import IngestSettings
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.ingest.workers import ParseWorkers

log = logging.getLogger(__name__)


class IngestApp:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.failed = asyncio.Event()
        self.registry = CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        self.admin = KafkaAdmin.for_settings(settings, "flakehouse-ingest")
        self.producer = make_producer(
            settings.kafka_bootstrap, "flakehouse-ingest", settings.produce_timeout_s
        )
        self.records = RecordProducer(self.producer, settings.produce_timeout_s, self.metrics)
        self.workers = ParseWorkers(settings.parse_workers)
        self.leases = Leases(
            settings.quota_address, f"ingest@{socket.gethostname()}", self.metrics.quota_unchecked
        )
        datasets = Datasets(
            self.admin,
            settings.topic_prefix,
            settings.default_partitions,
            settings.produce_timeout_s,
        )
        self.server = GrpcServer("ingest", settings, self.registry)
        self.server.add(
            ingest_pb2_grpc.add_IngestServiceServicer_to_server,
            IngestApi(
                settings, datasets, self.leases, self.records.produce, self.workers, self.metrics
            ),
            service_name(ingest_pb2.DESCRIPTOR, "IngestService"),
        )

    async def start(self) -> None:
        await self.admin.start()
        await self.producer.start()
        await self.server.start()
        await self.server.set_serving(True)

    async def stop(self) -> None:
        await self.server.stop()
        await asyncio.to_thread(self.workers.close)
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_s):
                await self.producer.stop()
        except TimeoutError:
            # Kafka is not answering: those uploads were never acknowledged to their clients,
            # who retry them with the same upload id.
            log.warning("Kafka did not take the last records before shutdown; dropped them")
        await self.leases.close()
        await self.admin.close()
