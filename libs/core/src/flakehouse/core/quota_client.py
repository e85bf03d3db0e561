"""A client of the quota service for what writes to a dataset: a lease per upload (ingest) or per
batch of pulled records (a replication link), and a dataset's limits set when it is created and
dropped when it is deleted (ingest). Writes go through when quota cannot be reached (logged and
counted): ingest must not become the weak point of a CI job because a limit could not be
checked."""

from __future__ import annotations

import logging

import grpc
from prometheus_client import Counter

from flakehouse.core.errors import InvalidArgument, ResourceExhausted, Unavailable
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc

log = logging.getLogger(__name__)

QUOTA_RETRY_MS = 1000


class QuotaClient:
    """One channel to the quota service; without one, every dataset is unlimited."""

    def __init__(
        self,
        channel: grpc.aio.Channel | None,
        holder: str,
        unchecked: Counter,
        timeout_s: float = 2.0,
        change_timeout_s: float = 10.0,
    ) -> None:
        self._holder = holder
        self._unchecked = unchecked
        self._timeout_s = timeout_s
        # Setting or dropping limits writes to Kafka on quota's side: allow it longer than a lease.
        self._change_timeout_s = change_timeout_s
        self._channel = channel
        self.stub = quota_pb2_grpc.QuotaServiceStub(self._channel) if self._channel else None

    async def acquire_lease(
        self, dataset: str, events: int, size: int, holder: str | None = None
    ) -> None:
        """Returns once the write may be produced; ResourceExhausted with a retry delay if not.
        `holder` names the writer when it is not this client's (a link of the replication
        service)."""
        if self.stub is None:
            return
        try:
            lease = await self.stub.AcquireLease(
                quota_pb2.AcquireLeaseRequest(
                    dataset=dataset, holder=holder or self._holder, events=events, bytes=size
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

    async def set_limits(self, dataset: str, limits: quota_pb2.Quota) -> None:
        """Sets every limit of a dataset. Unlike a lease, this must not pass unchecked: a limit
        that is not stored is not enforced, so the caller learns of any failure."""
        assert self.stub is not None, "the caller checks that there is a quota service"
        quota = quota_pb2.Quota()
        quota.CopyFrom(limits)
        quota.dataset = dataset
        try:
            request = quota_pb2.SetQuotaRequest(quota=quota)
            await self.stub.SetQuota(request, timeout=self._change_timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(exc.details() or "invalid limits") from None
            raise Unavailable(
                f"the quota service did not take the limits of {dataset!r} ({exc.code().name})",
                retry_after_ms=QUOTA_RETRY_MS,
            ) from None

    async def delete_limits(self, dataset: str, generation: int) -> None:
        """Drops the limits of the deleted `generation` of a dataset: those of a newer one (the
        name created again meanwhile) stay. Best effort: the quota service also drops the limits
        of datasets no longer live."""
        if self.stub is None:
            return
        try:
            await self.stub.DeleteQuota(
                quota_pb2.DeleteQuotaRequest(dataset=dataset, generation=generation),
                timeout=self._change_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "quota did not drop a deleted dataset's limits; it will on its own",
                extra={"dataset": dataset, "code": exc.code().name},
            )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
