"""Fixtures for the ingest tests: the ingest service in-process on the real broker, and a quota
service stand-in that records what ingest asks of it and publishes the limits it is given
(the real one is another service, tested with ingest in tests/)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc
import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.ingest.app import IngestApp
from flakehouse.ingest.settings import IngestSettings
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc
from tests import credentials


class FakeQuota(quota_pb2_grpc.QuotaServiceServicer):
    def __init__(self) -> None:
        self.limits: dict[str, quota_pb2.Quota] = {}
        self.set_calls: list[quota_pb2.Quota] = []
        # (dataset, generation) of each DeleteQuota.
        self.deleted: list[tuple[str, int]] = []
        self.refuse_set: grpc.StatusCode | None = None
        self._changed = asyncio.Event()
        self.address = ""

    def publish(self, quota: quota_pb2.Quota) -> None:
        """Sets a dataset's limits as if an operator had, and tells the watchers."""
        self.limits[quota.dataset] = quota
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def SetQuota(
        self, request: quota_pb2.SetQuotaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> quota_pb2.SetQuotaResponse:
        if self.refuse_set is not None:
            await context.abort(self.refuse_set, "refused by the test")
        self.set_calls.append(request.quota)
        self.publish(request.quota)
        return quota_pb2.SetQuotaResponse(quota=request.quota)

    async def DeleteQuota(
        self, request: quota_pb2.DeleteQuotaRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> quota_pb2.DeleteQuotaResponse:
        self.deleted.append((request.dataset, request.generation))
        self.limits.pop(request.dataset, None)
        self._notify()
        return quota_pb2.DeleteQuotaResponse()

    async def AcquireLease(
        self, request: quota_pb2.AcquireLeaseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> quota_pb2.AcquireLeaseResponse:
        return quota_pb2.AcquireLeaseResponse(
            granted_events=request.events, granted_bytes=request.bytes
        )

    async def WatchLimits(
        self, request: quota_pb2.WatchLimitsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[quota_pb2.WatchLimitsResponse]:
        while True:
            changed = self._changed
            yield quota_pb2.WatchLimitsResponse(
                datasets=[quota_pb2.DatasetLimits(quota=q) for q in self.limits.values()]
            )
            await changed.wait()


@pytest.fixture
async def fake_quota() -> AsyncIterator[FakeQuota]:
    fake = FakeQuota()  # type: ignore[abstract]  # only what ingest calls
    server = grpc.aio.server()
    quota_pb2_grpc.add_QuotaServiceServicer_to_server(fake, server)
    port = server.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    await server.start()
    fake.address = f"127.0.0.1:{port}"
    yield fake
    await server.stop(None)


StartIngest = Callable[..., Coroutine[Any, Any, IngestApp]]


@pytest.fixture
async def start_ingest(broker: EmbeddedBroker, topic_prefix: str) -> AsyncIterator[StartIngest]:
    """Starts ingest apps on the broker with the test's prefix; stops them all at the end."""
    apps: list[IngestApp] = []

    async def start(**overrides: Any) -> IngestApp:
        settings = IngestSettings(
            kafka_bootstrap=broker.bootstrap,
            topic_prefix=topic_prefix,
            **{"default_partitions": 2, "parse_workers": 0, **overrides},
        )
        app = IngestApp(settings)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()
