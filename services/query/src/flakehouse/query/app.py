"""Composition root of the query service: placement and limits watches, query slots, storage
channels, server."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from prometheus_client import CollectorRegistry

from flakehouse.core.kafka import KafkaConnection
from flakehouse.core.limits import LimitsWatch
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.core.service_auth import ServiceAuth, report_to
from flakehouse.core.tasks import BackgroundTasks
from flakehouse.core.tls import service_channel
from flakehouse.query.api import QueryApi
from flakehouse.query.fanout import StorageChannels
from flakehouse.query.metrics import QueryMetrics
from flakehouse.query.placements import Placements
from flakehouse.query.settings import QuerySettings
from flakehouse.query.slots import QuerySlots
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.quota.v1 import quota_pb2_grpc
from flakehouse.replication.v1 import replication_pb2_grpc

log = logging.getLogger(__name__)

CLIENT_ID = "flakehouse-query"
# How long readiness waits for the first limits: without them, queries would answer rows past
# their datasets' cutoffs; but a quota service that is down must not keep queries down.
LIMITS_WAIT_S = 5.0


class QueryApp:
    def __init__(self, settings: QuerySettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.tasks = BackgroundTasks()
        self.failed = self.tasks.failed
        self.auth = ServiceAuth(
            settings, settings, KafkaConnection.from_settings(settings), CLIENT_ID
        )
        self.channel = service_channel(settings.replication_address, settings)
        self.quota_channel = (
            service_channel(settings.quota_address, settings) if settings.quota_address else None
        )
        quota = quota_pb2_grpc.QuotaServiceStub(self.quota_channel) if self.quota_channel else None
        metrics = QueryMetrics(self.registry)
        self.placements = Placements(replication_pb2_grpc.ReplicationServiceStub(self.channel))
        self.limits = LimitsWatch(quota)
        slots = QuerySlots(quota, f"query-{socket.gethostname()}-{os.getpid()}", metrics)
        self.storage = StorageChannels(lambda address: service_channel(address, settings))
        self.server = GrpcServer("query", settings, self.registry, self.auth.table)
        self.server.add(
            query_pb2_grpc.add_QueryServiceServicer_to_server,
            QueryApi(settings, self.placements, self.storage, metrics, self.limits, slots),
            service_name(query_pb2.DESCRIPTOR, "QueryService"),
        )

    async def start(self) -> None:
        report = report_to(self.quota_channel) if self.quota_channel else None
        await self.auth.start(self.tasks, report)
        await self.server.start()
        self.tasks.spawn("placement", self.placements.watch_forever())
        self.tasks.spawn("limits", self.limits.watch_forever())
        self.tasks.spawn("ready", self._serve_when_ready())

    async def _serve_when_ready(self) -> None:
        await self.placements.ready.wait()
        try:
            await asyncio.wait_for(self.limits.ready.wait(), LIMITS_WAIT_S)
        except TimeoutError:
            log.warning("no limits from the quota service yet; serving without them until then")
        await self.server.set_serving(True)

    async def stop(self) -> None:
        await self.server.stop()
        await self.tasks.cancel_all()
        await self.storage.close()
        await self.auth.stop()
        await self.channel.close(None)
        if self.quota_channel is not None:
            await self.quota_channel.close(None)
