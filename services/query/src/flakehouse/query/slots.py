"""Query slots: a dataset's max_concurrent_queries, counted across every query process by the
quota service. When quota cannot be reached the query runs (logged and counted), as uploads do
without a lease: a limit that cannot be checked must not stop queries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from flakehouse.core.errors import ResourceExhausted
from flakehouse.query.metrics import QueryMetrics
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc

log = logging.getLogger(__name__)

# Quota answers AcquireQuerySlot within its query_slot_wait_ms (500 ms by default).
RPC_TIMEOUT_S = 2.0
# A slot outlives the query's deadline by this much before quota frees it unreleased: the
# query may still be merging, and release comes after.
HOLD_MARGIN_MS = 5000


class QuerySlots:
    def __init__(
        self,
        stub: quota_pb2_grpc.QuotaServiceAsyncStub | None,
        holder: str,
        metrics: QueryMetrics,
        timeout_s: float = RPC_TIMEOUT_S,
    ) -> None:
        self._stub = stub
        self._holder = holder
        self._metrics = metrics
        self._timeout_s = timeout_s
        # Slots granted after their query was cancelled, being given back.
        self._late: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def held(
        self, dataset: str, limits: quota_pb2.DatasetLimits | None, deadline_s: float
    ) -> AsyncIterator[None]:
        """Runs the body in one of the dataset's query slots, when it has a concurrency limit;
        ResourceExhausted with quota's retry delay when every slot stays taken."""
        limit = limits.quota.max_concurrent_queries if limits is not None else 0
        if self._stub is None or not limit:
            yield
            return
        acquire = asyncio.create_task(self._acquire(self._stub, dataset, limit, deadline_s))
        try:
            # Shielded: quota may grant the slot after the caller has gone, and only the
            # answer says which slot to give back.
            slot_id = await asyncio.shield(acquire)
        except asyncio.CancelledError:
            late = asyncio.create_task(self._give_back(self._stub, dataset, acquire))
            self._late.add(late)
            late.add_done_callback(self._late.discard)
            raise
        try:
            yield
        finally:
            if slot_id:
                # Shielded: a query cancelled by its caller still gives its slot back.
                await asyncio.shield(self._release(self._stub, dataset, slot_id))

    async def _acquire(
        self,
        stub: quota_pb2_grpc.QuotaServiceAsyncStub,
        dataset: str,
        limit: int,
        deadline_s: float,
    ) -> str:
        """The slot's id; "" when quota could not be asked (the query runs unchecked)."""
        request = quota_pb2.AcquireQuerySlotRequest(
            dataset=dataset,
            holder=self._holder,
            hold_ms=int(deadline_s * 1000) + HOLD_MARGIN_MS,
        )
        try:
            response = await stub.AcquireQuerySlot(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            self._metrics.limits_unchecked.labels(dataset).inc()
            log.warning(
                "quota unreachable; query concurrency not checked",
                extra={"dataset": dataset, "code": exc.code().name},
            )
            return ""
        if response.retry_after_ms:
            self._metrics.refusals.labels(dataset, "concurrency").inc()
            raise ResourceExhausted(
                f"dataset {dataset!r} has {limit} queries running, its max_concurrent_queries; "
                f"retry in {response.retry_after_ms} ms",
                retry_after_ms=response.retry_after_ms,
            )
        return response.slot_id

    async def _give_back(
        self,
        stub: quota_pb2_grpc.QuotaServiceAsyncStub,
        dataset: str,
        acquire: asyncio.Task[str],
    ) -> None:
        """Releases the slot of a cancelled query once quota answers, if it granted one."""
        try:
            slot_id = await acquire
        except ResourceExhausted:
            return  # refused: nothing held
        if slot_id:
            await self._release(stub, dataset, slot_id)

    async def _release(
        self, stub: quota_pb2_grpc.QuotaServiceAsyncStub, dataset: str, slot_id: str
    ) -> None:
        try:
            await stub.ReleaseQuerySlot(
                quota_pb2.ReleaseQuerySlotRequest(dataset=dataset, slot_id=slot_id),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            # Quota frees the slot by itself once its hold_ms is over.
            log.warning(
                "query slot not released",
                extra={"dataset": dataset, "slot_id": slot_id, "code": exc.code().name},
            )
