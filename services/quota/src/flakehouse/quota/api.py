"""The QuotaService servicer: protobuf in and out, the quota service's behaviour behind."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

from flakehouse.core.authn import readable, require
from flakehouse.core.errors import InvalidArgument
from flakehouse.core.grants import Role
from flakehouse.events.model import validate_dataset_name
from flakehouse.quota.quotas import Quotas
from flakehouse.quota.usage import UsageView
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc


def _dataset(name: str) -> str:
    try:
        return validate_dataset_name(name)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _usage(view: UsageView) -> quota_pb2.DatasetUsage:
    totals = view.totals
    return quota_pb2.DatasetUsage(
        dataset=view.dataset,
        bytes=totals.bytes,
        rows=totals.rows,
        replica_bytes=totals.replica_bytes,
        oldest_us=totals.oldest_us,
        newest_us=totals.newest_us,
        events_per_second=view.events_per_second,
        bytes_per_second=view.bytes_per_second,
        cutoff=view.cutoff,
        quota=view.quota,
        running_queries=view.running_queries,
    )


class QuotaApi(quota_pb2_grpc.QuotaServiceServicer):
    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas

    async def GetQuota(
        self, request: quota_pb2.GetQuotaRequest, context: Any
    ) -> quota_pb2.GetQuotaResponse:
        return quota_pb2.GetQuotaResponse(quota=self._quotas.quota(_dataset(request.dataset)))

    async def SetQuota(
        self, request: quota_pb2.SetQuotaRequest, context: Any
    ) -> quota_pb2.SetQuotaResponse:
        _dataset(request.quota.dataset)
        quota = await self._quotas.set_quota(request.quota, list(request.update_mask.paths))
        return quota_pb2.SetQuotaResponse(quota=quota)

    async def DeleteQuota(
        self, request: quota_pb2.DeleteQuotaRequest, context: Any
    ) -> quota_pb2.DeleteQuotaResponse:
        await self._quotas.delete_quota(_dataset(request.dataset), request.generation)
        return quota_pb2.DeleteQuotaResponse()

    async def AcquireLease(
        self, request: quota_pb2.AcquireLeaseRequest, context: Any
    ) -> quota_pb2.AcquireLeaseResponse:
        dataset = _dataset(request.dataset)
        wait = self._quotas.acquire_lease(dataset, request.events, request.bytes, request.holder)
        if wait > 0:
            return quota_pb2.AcquireLeaseResponse(retry_after_ms=_ms(wait))
        return quota_pb2.AcquireLeaseResponse(
            granted_events=request.events, granted_bytes=request.bytes
        )

    async def AcquireQuerySlot(
        self, request: quota_pb2.AcquireQuerySlotRequest, context: Any
    ) -> quota_pb2.AcquireQuerySlotResponse:
        dataset = _dataset(request.dataset)
        if not request.hold_ms:
            raise InvalidArgument("hold_ms is required: how long the slot may be held")
        answer = await self._quotas.acquire_slot(dataset, request.holder, request.hold_ms / 1000)
        if answer.slot_id:
            return quota_pb2.AcquireQuerySlotResponse(slot_id=answer.slot_id)
        return quota_pb2.AcquireQuerySlotResponse(retry_after_ms=_ms(answer.retry_after_s))

    async def ReleaseQuerySlot(
        self, request: quota_pb2.ReleaseQuerySlotRequest, context: Any
    ) -> quota_pb2.ReleaseQuerySlotResponse:
        await self._quotas.release_slot(_dataset(request.dataset), request.slot_id)
        return quota_pb2.ReleaseQuerySlotResponse()

    async def WatchLimits(
        self, request: quota_pb2.WatchLimitsRequest, context: Any
    ) -> AsyncIterator[quota_pb2.WatchLimitsResponse]:
        version, datasets = self._quotas.published()
        yield quota_pb2.WatchLimitsResponse(datasets=datasets)
        # Ends when the service stops, so the stream closes cleanly rather than being cut.
        while await self._quotas.wait_for_change(version) is not None:
            version, datasets = self._quotas.published()
            yield quota_pb2.WatchLimitsResponse(datasets=datasets)

    async def ReportUsage(
        self, request: quota_pb2.ReportUsageRequest, context: Any
    ) -> quota_pb2.ReportUsageResponse:
        if not request.node_id:
            raise InvalidArgument("node_id is required")
        drops = self._quotas.report_usage(request.node_id, list(request.partitions))
        return quota_pb2.ReportUsageResponse(drops=drops)

    async def GetUsage(
        self, request: quota_pb2.GetUsageRequest, context: Any
    ) -> quota_pb2.GetUsageResponse:
        if request.dataset:
            require(Role.READ, request.dataset)
        usage = [_usage(view) for view in await self._quotas.usage(request.dataset)]
        shown = readable([u.dataset for u in usage])
        return quota_pb2.GetUsageResponse(datasets=[u for u in usage if u.dataset in shown])
