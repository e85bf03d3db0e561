"""Composition root of the query service: placement watch, storage channels, server."""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry

from flakehouse.core.server import CHANNEL_OPTIONS, GrpcServer, service_name
from flakehouse.core.tasks import BackgroundTasks
from flakehouse.query.api import QueryApi, StorageChannels
from flakehouse.query.metrics import QueryMetrics
from flakehouse.query.placements import Placements
from flakehouse.query.settings import QuerySettings
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.replication.v1 import replication_pb2_grpc


class QueryApp:
    def __init__(self, settings: QuerySettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.tasks = BackgroundTasks()
        self.failed = self.tasks.failed
        self.channel = grpc.aio.insecure_channel(
            settings.replication_address, options=CHANNEL_OPTIONS
        )
        self.placements = Placements(replication_pb2_grpc.ReplicationServiceStub(self.channel))
        self.storage = StorageChannels()
        self.server = GrpcServer("query", settings, self.registry)
        self.server.add(
            query_pb2_grpc.add_QueryServiceServicer_to_server,
            QueryApi(settings, self.placements, self.storage, QueryMetrics(self.registry)),
            service_name(query_pb2.DESCRIPTOR, "QueryService"),
        )

    async def start(self) -> None:
        await self.server.start()
        self.tasks.spawn("placement", self.placements.watch_forever())
        self.tasks.spawn("ready", self._serve_when_placed())

    async def _serve_when_placed(self) -> None:
        await self.placements.ready.wait()
        await self.server.set_serving(True)

    async def stop(self) -> None:
        await self.server.stop()
        await self.tasks.cancel_all()
        await self.storage.close()
        await self.channel.close(None)
