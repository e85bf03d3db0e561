"""Composition root of the quota service: the catalog reader, the limits topic, the cutoff
loop and the server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from flakehouse.auth.v1 import tokens_pb2, tokens_pb2_grpc
from flakehouse.core.catalog import CatalogReader
from flakehouse.core.kafka import KafkaConnection, make_producer
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.core.service_auth import ServiceAuth
from flakehouse.core.tasks import BackgroundTasks
from flakehouse.quota.api import QuotaApi
from flakehouse.quota.metrics import QuotaMetrics
from flakehouse.quota.quotas import Quotas
from flakehouse.quota.settings import QuotaSettings
from flakehouse.quota.store import LimitsStore
from flakehouse.quota.token_store import TokenStore
from flakehouse.quota.tokens_api import TokensApi
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc

CLIENT_ID = "flakehouse-quota"


class QuotaApp:
    def __init__(self, settings: QuotaSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.tasks = BackgroundTasks()
        self.failed = self.tasks.failed
        kafka = KafkaConnection.from_settings(settings)
        self.producer = make_producer(kafka, CLIENT_ID)
        self.catalog = CatalogReader(settings, kafka, CLIENT_ID)
        self.quotas = Quotas(
            settings,
            LimitsStore(settings, kafka, self.producer),
            self.catalog,
            QuotaMetrics(self.registry),
        )
        self.auth = ServiceAuth(settings, settings, kafka, CLIENT_ID)
        self.tokens = TokensApi(self.auth.table, TokenStore(self.producer, settings.topic_prefix))
        self.server = GrpcServer("quota", settings, self.registry, self.auth.table)
        self.server.add(
            quota_pb2_grpc.add_QuotaServiceServicer_to_server,
            QuotaApi(self.quotas),
            service_name(quota_pb2.DESCRIPTOR, "QuotaService"),
        )
        self.server.add(
            tokens_pb2_grpc.add_TokenServiceServicer_to_server,
            self.tokens,
            service_name(tokens_pb2.DESCRIPTOR, "TokenService"),
        )

    async def start(self) -> None:
        await self.producer.start()
        await self.auth.start(self.tasks, self.tokens.record_use)
        await self.catalog.start()
        await self.quotas.load()
        await self.server.start()
        await self.server.set_serving(True)
        self.tasks.spawn("cutoffs", self.quotas.run_forever())

    async def stop(self) -> None:
        await self.tasks.cancel_all()
        # Watch streams end first, cleanly, rather than being cut off by the grace period.
        await self.quotas.close()
        await self.server.stop()
        await self.catalog.stop()
        await self.auth.stop()
        await self.producer.stop()
