"""Ingest's side of quotas: one lease per upload from the quota service. When the quota service
cannot be reached, uploads go through (logged and counted): ingest must not become the weak
point of a CI job because a limit could not be checked."""

from __future__ import annotations

import logging

import grpc
from prometheus_client import Counter

from flakehouse.core.errors import ResourceExhausted
from flakehouse.core.server import CHANNEL_OPTIONS
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc

log = logging.getLogger(__name__)


class Leases:
    def __init__(
        self, address: str, holder: str, unchecked: Counter, timeout_s: float = 2.0
    ) -> None:
        self._holder = holder
        self._unchecked = unchecked
        self._timeout_s = timeout_s
        self._channel = (
            grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) if address else None
        )
        self._stub = quota_pb2_grpc.QuotaServiceStub(self._channel) if self._channel else None

    async def acquire(self, dataset: str, events: int, size: int) -> None:
        """Returns once the upload may be produced; ResourceExhausted with a retry delay if not."""
        if self._stub is None:
            return
        try:
            lease = await self._stub.AcquireLease(
                quota_pb2.AcquireLeaseRequest(
                    dataset=dataset, holder=self._holder, events=events, bytes=size
                ),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            self._unchecked.inc()
            log.warning("quota unreachable; upload not checked", extra={"code": exc.code().name})
            return
        if lease.retry_after_ms:
            raise ResourceExhausted(
                f"dataset {dataset!r} is over its ingest rate; retry in {lease.retry_after_ms} ms",
                retry_after_ms=lease.retry_after_ms,
            )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
