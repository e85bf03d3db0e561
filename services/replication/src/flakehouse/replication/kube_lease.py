"""Leader election among controller replicas with a coordination.k8s.io/v1 Lease, as client-go's
leaderelection does it: one holder at a time, renewed periodically, taken over once expired."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes.aio import client

log = logging.getLogger(__name__)

CONFLICT = 409
NOT_FOUND = 404
MERGE_PATCH = "application/merge-patch+json"


def micro_time(t: float) -> str:
    """A Kubernetes MicroTime: the API server requires exactly six fractional digits, which
    `datetime.isoformat()` drops when the microseconds are zero (so the generated models' own
    serialization is not used for lease writes)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_holder(spec: client.V1LeaseSpec | None, now: float) -> str:
    """Who holds the lease at `now` (epoch seconds): empty when nobody does, because it was
    released or because renewTime + leaseDurationSeconds has passed."""
    if spec is None or not spec.holder_identity:
        return ""
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None or spec.lease_duration_seconds is None:
        return ""
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=UTC)
    if renewed.timestamp() + spec.lease_duration_seconds < now:
        return ""
    return spec.holder_identity


class LeaseElector:
    """Campaigns for a Lease until cancelled; `is_leader` / `leading` say whether this replica
    leads now.

    Writes are compare-and-swap on the Lease's resourceVersion (a merge patch carrying
    metadata.resourceVersion: a 409 Conflict means another replica wrote first). A leader that
    cannot renew within `renew_deadline_s` steps down, before the lease can expire for the
    others. On cancellation a leader stops leading, then releases the lease (clears
    holderIdentity) so that another replica takes over at once instead of after expiry.
    Lease times come from `clock` (epoch seconds, injectable for tests); local deadlines from the
    event loop's monotonic clock.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration_s: int = 15,
        renew_deadline_s: float | None = None,
        retry_period_s: float | None = None,
        clock: Callable[[], float] = time.time,
        on_started_leading: Callable[[], object] | None = None,
        on_stopped_leading: Callable[[], object] | None = None,
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        # client-go's defaults keep the same ratios: 15 s lease, 10 s deadline, 2 s retry.
        self.renew_deadline_s = renew_deadline_s or lease_duration_s * 2 / 3
        self.retry_period_s = retry_period_s or lease_duration_s / 7.5
        if not identity:
            raise ValueError("identity must not be empty")
        if not 0 < self.retry_period_s < self.renew_deadline_s < lease_duration_s:
            raise ValueError("need 0 < retry_period_s < renew_deadline_s < lease_duration_s")
        self.clock = clock
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.leading = asyncio.Event()
        """Set while this replica is the leader."""
        self.observed_holder = ""
        """The holder seen at the last successful read or write; empty when none."""
        self._version: str | None = None  # resourceVersion of the lease as we last wrote it
        self._renewed_at = 0.0  # loop time just before the last successful write

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                budget = self.renew_deadline_s
                if self.is_leader:
                    budget -= loop.time() - self._renewed_at
                try:
                    async with asyncio.timeout(max(budget, 0.0)):
                        await self._try_acquire_or_renew()
                except client.ApiException as exc:
                    log.warning("lease %s: API error %s %s", self.name, exc.status, exc.reason)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("lease %s: %r", self.name, exc)
                if self.is_leader and loop.time() - self._renewed_at >= self.renew_deadline_s:
                    log.warning("lease %s: not renewed in time, stepping down", self.name)
                    self._stop_leading()
                await asyncio.sleep(self.retry_period_s)
        finally:
            if self.is_leader:
                # Stop acting as leader before anyone else may start.
                self._stop_leading()
                await self._release()

    async def _try_acquire_or_renew(self) -> None:
        if self.is_leader and self._version is not None:
            try:
                await self._write(self._version, self.identity, acquired=False, transitions=None)
                return
            except client.ApiException as exc:
                if exc.status != CONFLICT:
                    raise
                # Written by someone else since: read it and decide again.
        lease = await self._read_or_create()
        spec = lease.spec
        holder = lease_holder(spec, self.clock())
        self.observed_holder = holder
        if holder and holder != self.identity:
            self._version = None
            if self.is_leader:
                log.warning("lease %s: now held by %s, stepping down", self.name, holder)
                self._stop_leading()
            return
        version = lease.metadata.resource_version if lease.metadata else None
        if not version:
            log.warning("lease %s: no resourceVersion, cannot compare-and-swap", self.name)
            return
        previous = (spec.holder_identity if spec else None) or ""
        transitions = (spec.lease_transitions if spec else None) or 0
        acquired = previous != self.identity
        try:
            await self._write(
                version,
                self.identity,
                acquired=acquired,
                transitions=transitions + 1 if acquired else None,
            )
        except client.ApiException as exc:
            if exc.status != CONFLICT:
                raise
            self._version = None
            if self.is_leader:
                self._stop_leading()
            log.info("lease %s: another replica wrote first", self.name)
            return
        if not self.is_leader:
            self._start_leading()

    async def _read_or_create(self) -> client.V1Lease:
        try:
            return await self.coordination.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as exc:
            if exc.status != NOT_FOUND:
                raise
        # Created without a holder; it is then acquired like any free lease, by compare-and-swap.
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(lease_duration_seconds=self.lease_duration_s),
        )
        try:
            return await self.coordination.create_namespaced_lease(self.namespace, body)
        except client.ApiException as exc:
            if exc.status != CONFLICT:
                raise
        return await self.coordination.read_namespaced_lease(self.name, self.namespace)

    async def _write(
        self, version: str, holder: str | None, *, acquired: bool, transitions: int | None
    ) -> None:
        now = self.clock()
        started = asyncio.get_running_loop().time()
        spec: dict[str, Any] = {
            "holderIdentity": holder,
            "leaseDurationSeconds": self.lease_duration_s,
            "renewTime": micro_time(now),
        }
        if acquired:
            spec["acquireTime"] = micro_time(now)
        if transitions is not None:
            spec["leaseTransitions"] = transitions
        # With metadata.resourceVersion in it, a patch is applied only to that version.
        body = {"metadata": {"resourceVersion": version}, "spec": spec}
        lease = await self.coordination.patch_namespaced_lease(
            self.name, self.namespace, body, _content_type=MERGE_PATCH
        )
        self._version = lease.metadata.resource_version if lease.metadata else None
        self._renewed_at = started
        self.observed_holder = holder or ""

    async def _release(self) -> None:
        if self._version is None:
            return
        try:
            async with asyncio.timeout(self.renew_deadline_s):
                await self._write(self._version, None, acquired=False, transitions=None)
            log.info("lease %s: released", self.name)
        except client.ApiException as exc:
            # A conflict means another replica already holds it: nothing to release.
            log.info("lease %s: not released: %s %s", self.name, exc.status, exc.reason)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("lease %s: not released, it will expire: %r", self.name, exc)
        self._version = None

    def _start_leading(self) -> None:
        log.info("lease %s: %s is the leader", self.name, self.identity)
        self.leading.set()
        self._callback(self.on_started_leading)

    def _stop_leading(self) -> None:
        log.info("lease %s: %s stopped leading", self.name, self.identity)
        self.leading.clear()
        self._callback(self.on_stopped_leading)

    def _callback(self, callback: Callable[[], object] | None) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            log.exception("lease %s: leadership callback failed", self.name)
