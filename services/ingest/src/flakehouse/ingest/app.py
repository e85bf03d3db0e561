"""Composition root of the ingest service: Kafka admin, producer and dataset catalog, the quota
client and the limits it publishes, the server."""

from __future__ import annotations

import asyncio
import logging
import socket

from prometheus_client import CollectorRegistry

from flakehouse.core.catalog import CatalogReader
from flakehouse.core.cluster_identity import cluster_id
from flakehouse.core.kafka import KafkaAdmin, KafkaConnection, make_producer
from flakehouse.core.limits import LimitsWatch
from flakehouse.core.quota_client import QuotaClient
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.core.service_auth import ServiceAuth, report_to
from flakehouse.core.tasks import BackgroundTasks
from flakehouse.core.tls import service_channel
from flakehouse.ingest.api import IngestApi
from flakehouse.ingest.datasets import Datasets
from flakehouse.ingest.metrics import IngestMetrics
from flakehouse.ingest.producer import RecordProducer
from flakehouse.ingest.resumable import ResumableSpools
from flakehouse.ingest.retention_follower import RetentionFollower
from flakehouse.ingest.settings import IngestSettings
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.ingest.workers import ParseWorkers

log = logging.getLogger(__name__)
CLIENT_ID = "flakehouse-ingest"


class IngestApp:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.tasks = BackgroundTasks()
        self.failed = self.tasks.failed
        self.registry = CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        kafka = KafkaConnection.from_settings(settings)
        self.admin = KafkaAdmin.for_settings(settings, kafka, CLIENT_ID)
        self.producer = make_producer(kafka, CLIENT_ID, settings.produce_timeout_s)
        self.catalog = CatalogReader(settings, kafka, CLIENT_ID)
        self.records = RecordProducer(self.producer, settings.produce_timeout_s, self.metrics)
        self.workers = ParseWorkers(settings.parse_workers)
        self.resumable = ResumableSpools(settings.spool_dir, settings.resume_ttl_s)
        self.auth = ServiceAuth(settings, settings, kafka, CLIENT_ID)
        quota_channel = (
            service_channel(settings.quota_address, settings) if settings.quota_address else None
        )
        self.quota_report = report_to(quota_channel) if quota_channel else None
        self.quota = QuotaClient(
            quota_channel,
            f"ingest@{socket.gethostname()}",
            self.metrics.quota_unchecked,
        )
        self.retention = RetentionFollower(self.admin, self.catalog, settings.produce_timeout_s)
        self.limits = LimitsWatch(self.quota.stub, on_change=self.retention.on_limits)
        self.datasets = Datasets(
            self.admin,
            self.catalog,
            self.producer,
            self.quota,
            self.retention,
            prefix=settings.topic_prefix,
            default_partitions=settings.default_partitions,
            timeout_s=settings.produce_timeout_s,
        )
        self.server = GrpcServer("ingest", settings, self.registry, self.auth.table)
        self.kafka = kafka
        self.api = IngestApi(
            settings,
            self.datasets,
            self.quota,
            self.records,
            self.workers,
            self.metrics,
            self.resumable,
            kafka,
        )
        self.server.add(
            ingest_pb2_grpc.add_IngestServiceServicer_to_server,
            self.api,
            service_name(ingest_pb2.DESCRIPTOR, "IngestService"),
        )

    async def start(self) -> None:
        await self.auth.start(self.tasks, self.quota_report)
        await self.admin.start()
        await self.producer.start()
        await self.catalog.start()
        self.api.cluster_id = await cluster_id(self.settings, self.kafka, CLIENT_ID)
        # Every record written here names this cluster as its events' origin.
        self.records.origin = self.api.cluster_id
        log.info("cluster %s", self.api.cluster_id, extra={"cluster_id": self.api.cluster_id})
        # In the background: a leftover topic Kafka will not delete now must not keep ingest
        # from serving (it logs the failure and tries again at the next start).
        self.tasks.spawn("retired-topics", self.datasets.remove_retired_topics())
        self.tasks.spawn("limits", self.limits.watch_forever())
        self.tasks.spawn("retention", self.retention.run_forever())
        self.tasks.spawn("resumable-sweep", self._sweep_forever())
        await self.server.start()
        await self.server.set_serving(True)

    async def _sweep_forever(self) -> None:
        """Removes the bytes of resumable uploads that nobody came back for."""
        while True:
            removed = await asyncio.to_thread(self.resumable.sweep)
            if removed:
                log.info("removed %d abandoned resumable upload(s)", removed)
            await asyncio.sleep(min(60.0, self.settings.resume_ttl_s / 4))

    async def stop(self) -> None:
        await self.server.stop()
        await self.tasks.cancel_all()
        await asyncio.to_thread(self.workers.close)
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_s):
                await self.producer.stop()
        except TimeoutError:
            # Kafka is not answering: those uploads were never acknowledged to their clients,
            # who retry them with the same upload id.
            log.warning("Kafka did not take the last records before shutdown; dropped them")
        await self.quota.close()
        await self.catalog.stop()
        await self.admin.close()
        await self.auth.stop()
