"""The QuotaService servicer: protobuf in and out, the ledger and the limits topic behind."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from flakehouse.core.errors import InvalidArgument
from flakehouse.events.model import validate_dataset_name
from flakehouse.quota.ledger import Ledger
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc


def _dataset(name: str) -> str:
    try:
        return validate_dataset_name(name)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


class QuotaApi(quota_pb2_grpc.QuotaServiceServicer):
    def __init__(
        self,
        ledger: Ledger,
        persist: Callable[[quota_pb2.Quota], Awaitable[None]],
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._persist = persist
        self._clock = clock
        self._leases = Counter(
            "flakehouse_quota_leases_total",
            "Lease requests, by dataset and whether they were granted.",
            ["dataset", "result"],
            registry=registry,
        )

    async def GetQuota(
        self, request: quota_pb2.GetQuotaRequest, context: Any
    ) -> quota_pb2.GetQuotaResponse:
        return quota_pb2.GetQuotaResponse(quota=self._ledger.quota(_dataset(request.dataset)))

    async def SetQuota(
        self, request: quota_pb2.SetQuotaRequest, context: Any
    ) -> quota_pb2.SetQuotaResponse:
        quota = request.quota
        _dataset(quota.dataset)
        for name in ("events_per_second", "bytes_per_second"):
            value = getattr(quota, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"{name} must be a finite number >= 0 (0: unlimited)")
        # Durable first: a limit that was answered as set survives a restart of this service.
        await self._persist(quota)
        self._ledger.set_quota(quota, self._clock())
        return quota_pb2.SetQuotaResponse(quota=quota)

    async def AcquireLease(
        self, request: quota_pb2.AcquireLeaseRequest, context: Any
    ) -> quota_pb2.AcquireLeaseResponse:
        dataset = _dataset(request.dataset)
        wait = self._ledger.try_acquire(dataset, request.events, request.bytes, self._clock())
        if wait > 0:
            self._leases.labels(dataset, "denied").inc()
            return quota_pb2.AcquireLeaseResponse(retry_after_ms=max(1, math.ceil(wait * 1000)))
        self._leases.labels(dataset, "granted").inc()
        return quota_pb2.AcquireLeaseResponse(
            granted_events=request.events, granted_bytes=request.bytes
        )

    async def ReportUsage(
        self, request: quota_pb2.ReportUsageRequest, context: Any
    ) -> quota_pb2.ReportUsageResponse:
        if not request.node_id:
            raise InvalidArgument("node_id is required")
        self._ledger.report(request.node_id, list(request.partitions))
        return quota_pb2.ReportUsageResponse()

    async def GetUsage(
        self, request: quota_pb2.GetUsageRequest, context: Any
    ) -> quota_pb2.GetUsageResponse:
        usage = self._ledger.usage()
        if request.dataset:
            usage = {k: v for k, v in usage.items() if k == request.dataset}
        return quota_pb2.GetUsageResponse(
            datasets=[
                quota_pb2.DatasetUsage(dataset=name, bytes=u.bytes, rows=u.rows)
                for name, u in sorted(usage.items())
            ]
        )
