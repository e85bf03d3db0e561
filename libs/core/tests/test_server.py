"""The server bootstrap through a real aio server: statuses, health, reflection, metrics."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from flakehouse.core.errors import RETRY_AFTER_KEY, InvalidArgument, ResourceExhausted
from flakehouse.core.server import LIVENESS_SERVICE, GrpcServer, service_name
from flakehouse.core.settings import ServiceSettings
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc
from tests import credentials


class FailingQuota(quota_pb2_grpc.QuotaServiceServicer):
    async def GetQuota(
        self, request: quota_pb2.GetQuotaRequest, context: object
    ) -> quota_pb2.GetQuotaResponse:
        if request.dataset == "bad":
            raise InvalidArgument("dataset 'bad' is bad")
        if request.dataset == "busy":
            raise ResourceExhausted("slow down", retry_after_ms=250)
        if request.dataset == "boom":
            raise RuntimeError("secret internals")
        return quota_pb2.GetQuotaResponse(quota=quota_pb2.Quota(dataset=request.dataset))


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    running = GrpcServer(
        "test",
        ServiceSettings(**credentials.tls_settings()),
        CollectorRegistry(),
        credentials.token_table(),
    )
    running.add(
        quota_pb2_grpc.add_QuotaServiceServicer_to_server,
        FailingQuota(),
        service_name(quota_pb2.DESCRIPTOR, "QuotaService"),
    )
    await running.start()
    yield running
    await running.stop()


async def test_errors_map_to_status_codes(server: GrpcServer) -> None:
    async with credentials.aio_channel(server.address) as channel:
        stub = quota_pb2_grpc.QuotaServiceStub(channel)
        ok = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))
        assert ok.quota.dataset == "ci"
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="bad"))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.value.details() == "dataset 'bad' is bad"
        with pytest.raises(grpc.aio.AioRpcError) as busy:
            await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="busy"))
        assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(busy.value.trailing_metadata() or ())[RETRY_AFTER_KEY] == "250"
        with pytest.raises(grpc.aio.AioRpcError) as boom:
            await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="boom"))
        assert boom.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in (boom.value.details() or "")


async def test_health_follows_readiness_and_metrics_count_calls(server: GrpcServer) -> None:
    async with credentials.aio_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # Alive while not ready: what the chart's liveness probe asks.
        alive = await health.Check(health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE))
        assert alive.status == health_pb2.HealthCheckResponse.SERVING
        await server.set_serving(True)
        check = await health.Check(
            health_pb2.HealthCheckRequest(service="flakehouse.quota.v1.QuotaService")
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        await quota_pb2_grpc.QuotaServiceStub(channel).GetQuota(
            quota_pb2.GetQuotaRequest(dataset="x")
        )
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'flakehouse_test_grpc_requests_total{code="OK",method="GetQuota"} 1.0' in body


async def test_reflection_lists_services(server: GrpcServer) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with credentials.aio_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in response.list_services_response.service}
            break
    assert "flakehouse.quota.v1.QuotaService" in names
    assert "grpc.health.v1.Health" in names
