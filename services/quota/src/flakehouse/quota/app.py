"""Composition root of the quota service: limits topic, ledger, server."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry

from flakehouse.core.kafka import make_producer, quotas_topic, read_state_topic
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.quota.api import QuotaApi
from flakehouse.quota.ledger import Ledger
from flakehouse.quota.settings import QuotaSettings
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc

log = logging.getLogger(__name__)


class QuotaApp:
    def __init__(self, settings: QuotaSettings) -> None:
        self.settings = settings
        self.failed = asyncio.Event()
        self.registry = CollectorRegistry()
        self.ledger = Ledger(settings.burst_s)
        self.topic = quotas_topic(settings.topic_prefix)
        self.producer = make_producer(settings.kafka_bootstrap, "flakehouse-quota")
        self.server = GrpcServer("quota", settings, self.registry)
        self.server.add(
            quota_pb2_grpc.add_QuotaServiceServicer_to_server,
            QuotaApi(self.ledger, self._persist, self.registry),
            service_name(quota_pb2.DESCRIPTOR, "QuotaService"),
        )

    async def start(self) -> None:
        await self._load_limits()
        await self.producer.start()
        await self.server.start()
        await self.server.set_serving(True)

    async def _load_limits(self) -> None:
        """Rebuilds every limit from the compacted topic; the last value of a dataset wins."""
        records = await read_state_topic(self.settings, "flakehouse-quota", self.topic)
        for key, value in records:
            if key is not None and value is not None:
                self.ledger.set_quota(quota_pb2.Quota.FromString(value), time.monotonic())
        log.info("loaded quotas", extra={"records": len(records)})

    async def _persist(self, quota: quota_pb2.Quota) -> None:
        await self.producer.send_and_wait(
            self.topic, quota.SerializeToString(), key=quota.dataset.encode()
        )

    async def stop(self) -> None:
        await self.server.stop()
        await self.producer.stop()
