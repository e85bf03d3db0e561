"""Dataset limits as every service sees them (DESIGN.md §7): how the cutoff of a moment follows
from the limits, and LimitsWatch, the local copy of every dataset's limits that query and ingest
keep from the quota service's WatchLimits stream. What a valid limit is: limit_rules."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc

log = logging.getLogger(__name__)

RETRY_S = 1.0
CUTOFF_REASONS = {
    quota_pb2.CUTOFF_REASON_UNSPECIFIED: "",
    quota_pb2.CUTOFF_REASON_RETENTION: "retention",
    quota_pb2.CUTOFF_REASON_STORED_BYTES: "stored-bytes limit",
}


def current_limits(
    limits: quota_pb2.DatasetLimits | None, generation: int
) -> quota_pb2.DatasetLimits | None:
    """`limits` when they belong to the dataset's live `generation`; None when they are another
    incarnation's (the name deleted and created again, and quota not caught up yet). Limits of
    generation 0 do not say which, and apply; a `generation` of 0 is the first."""
    if limits is None or limits.generation in (0, max(generation, 1)):
        return limits
    return None


def cutoff_at(limits: quota_pb2.DatasetLimits | None, now_us: int) -> quota_pb2.Cutoff:
    """The cutoff at `now_us`: max(floor, now - retention), with its reason. The query service
    computes it once per query, so every partition and both replicas use the same one."""
    if limits is None:
        return quota_pb2.Cutoff()
    cutoff = quota_pb2.Cutoff()
    cutoff.CopyFrom(limits.floor)
    retention_s = limits.quota.retention_seconds
    if retention_s:
        by_age = now_us - retention_s * 1_000_000
        if by_age >= cutoff.cutoff_us:
            cutoff.cutoff_us = by_age
            cutoff.reason = quota_pb2.CUTOFF_REASON_RETENTION
    return cutoff


class LimitsWatch:
    """Every dataset's limits, kept current by the quota service's WatchLimits stream. When the
    stream breaks, the last limits stay in force until it is back. Without a quota address,
    every dataset is unlimited."""

    def __init__(
        self,
        stub: quota_pb2_grpc.QuotaServiceAsyncStub | None,
        on_change: Callable[[dict[str, quota_pb2.DatasetLimits]], None] | None = None,
    ) -> None:
        self._stub = stub
        self._on_change = on_change
        self.datasets: dict[str, quota_pb2.DatasetLimits] = {}
        self.ready = asyncio.Event()
        if stub is None:
            self.ready.set()

    def limits(self, dataset: str) -> quota_pb2.DatasetLimits | None:
        return self.datasets.get(dataset)

    def take(self, response: quota_pb2.WatchLimitsResponse) -> None:
        self.datasets = {d.quota.dataset: d for d in response.datasets}
        self.ready.set()
        if self._on_change is not None:
            self._on_change(self.datasets)

    async def watch_forever(self) -> None:
        if self._stub is None:
            return
        while True:
            try:
                async for update in self._stub.WatchLimits(quota_pb2.WatchLimitsRequest()):
                    self.take(update)
            except grpc.aio.AioRpcError as exc:
                log.warning("limits watch broken; reconnecting", extra={"code": exc.code().name})
            await asyncio.sleep(RETRY_S)
