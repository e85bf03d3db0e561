"""Lease leader election, through the real `kubernetes` client talking HTTP to the fake API
server (kube_fake.py) on 127.0.0.1: one leader, hand-over, stepping down, expiry by the clock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from kubernetes.aio import client

from flakehouse.replication.kube_lease import LeaseElector, micro_time
from services.replication.tests.kube_fake import (
    LEASES,
    NS,
    Endpoint,
    FakeApiServer,
    api_client,
    main_port,
    running,
    write,
)
from tests.support import eventually_async

LEASE = "flakehouse-replication"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE}"


class Candidate:
    """An elector, as in another replica, with the periods when it led (1 s lease, 0.5 s renew
    deadline)."""

    def __init__(self, identity: str, api: client.ApiClient, **options: Any) -> None:
        self.identity = identity
        self.periods: list[list[float]] = []
        self.wall_starts: list[float] = []
        options.setdefault("renew_deadline_s", 0.5)
        options.setdefault("retry_period_s", 0.05)
        self.elector = LeaseElector(
            api,
            NS,
            LEASE,
            identity,
            lease_duration_s=1,
            on_started_leading=self._started,
            on_stopped_leading=lambda: self.periods[-1].append(time.monotonic()),
            **options,
        )
        self._task: asyncio.Task[None] | None = None

    def _started(self) -> None:
        self.periods.append([time.monotonic()])
        self.wall_starts.append(time.time())

    @property
    def leads(self) -> bool:
        return self.elector.is_leader

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.elector.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


@contextlib.asynccontextmanager
async def candidate(port: int, identity: str, **options: Any) -> AsyncIterator[Candidate]:
    async with api_client(port) as api:
        c = Candidate(identity, api, **options)
        c.start()
        try:
            yield c
        finally:
            await c.stop()


def lease(fake: FakeApiServer) -> dict[str, Any]:
    return fake.objects[LEASES, NS, LEASE].raw


def overlap(a: Candidate, b: Candidate) -> bool:
    now = time.monotonic()
    spans_a = [(p[0], p[1] if len(p) > 1 else now) for p in a.periods]
    spans_b = [(p[0], p[1] if len(p) > 1 else now) for p in b.periods]
    return any(sa < eb and sb < ea for sa, ea in spans_a for sb, eb in spans_b)


@contextlib.asynccontextmanager
async def leader_counts(candidates: list[Candidate]) -> AsyncIterator[list[int]]:
    """How many lead, sampled every few milliseconds."""
    samples: list[int] = []

    async def sample() -> None:
        while True:
            samples.append(sum(c.leads for c in candidates))
            await asyncio.sleep(0.005)

    async with running(sample()):
        yield samples


async def test_two_electors_elect_one_leader_which_hands_over_when_it_stops(
    fake: FakeApiServer,
) -> None:
    port = main_port(fake)
    async with candidate(port, "replication-a") as a, candidate(port, "replication-b") as b:
        async with leader_counts([a, b]) as samples:
            await eventually_async(lambda: a.leads or b.leads)
            await asyncio.sleep(0.4)  # several renewals
        assert max(samples) == 1 and samples[-1] == 1
        leader, follower = (a, b) if a.leads else (b, a)
        assert len(leader.periods) == 1 and not follower.periods
        assert lease(fake)["spec"]["holderIdentity"] == leader.identity
        assert lease(fake)["spec"]["leaseTransitions"] == 1

        # A clean stop releases the lease: the other takes over at once, not after expiry.
        stopped = time.monotonic()
        await leader.stop()
        assert not leader.leads and len(leader.periods[0]) == 2
        releases = [
            r
            for r in fake
            if r.action == kmock.action.UPDATE and "holderIdentity" in r.data["spec"]
            if r.data["spec"]["holderIdentity"] is None
        ]
        assert len(releases) == 1
        await eventually_async(lambda: follower.leads, timeout_s=1.0)
        assert time.monotonic() - stopped < 0.5
        assert not overlap(a, b)
        assert lease(fake)["spec"]["holderIdentity"] == follower.identity
        assert lease(fake)["spec"]["leaseTransitions"] == 2


async def test_a_leader_that_cannot_renew_steps_down_before_another_takes_over(
    fake: FakeApiServer,
) -> None:
    async with Endpoint(fake) as partitioned, candidate(partitioned.port, "replication-a") as a:
        await eventually_async(lambda: a.leads)
        async with candidate(main_port(fake), "replication-b") as b:
            await asyncio.sleep(0.2)
            assert a.leads and not b.leads
            await partitioned.stop()  # a can no longer reach the API server
            cut = time.monotonic()
            await eventually_async(lambda: not a.leads, timeout_s=1.0)
            stepped_down = time.monotonic()
            await eventually_async(lambda: b.leads, timeout_s=2.0)
            took_over = time.monotonic()
            assert lease(fake)["spec"]["holderIdentity"] == "replication-b"
    # a gave up before its lease (1 s) could expire (its renew deadline is 0.5 s; what matters
    # is that no one else could hold the lease yet); b waited for the lease to expire.
    assert stepped_down - cut < 1.0
    assert took_over - cut > 0.5
    assert not overlap(a, b)


def ghost_lease(fake: FakeApiServer, renewed: float) -> None:
    fake.objects[LEASES, NS, LEASE] = {
        "metadata": {"name": LEASE, "namespace": NS, "resourceVersion": "1"},
        "spec": {
            "holderIdentity": "ghost",
            "leaseDurationSeconds": 1,
            "renewTime": micro_time(renewed),
        },
    }


async def test_a_live_holder_is_waited_for_and_an_expired_one_replaced(fake: FakeApiServer) -> None:
    renewed = time.time() - 0.5  # the 1 s lease has 0.5 s to go
    ghost_lease(fake, renewed)
    async with candidate(main_port(fake), "replication-a") as a:
        await eventually_async(lambda: a.elector.observed_holder == "ghost")
        await eventually_async(lambda: a.leads, timeout_s=2.0)
        assert a.wall_starts[0] > renewed + 1.0  # not before the ghost's lease expired
        assert fake.count(kmock.action.UPDATE, LEASES) == 1  # and no write before
    assert "holderIdentity" not in lease(fake)["spec"]  # released at stop


async def test_expiry_is_judged_by_the_injected_clock(fake: FakeApiServer) -> None:
    ghost_lease(fake, time.time())
    # A clock 10 s ahead sees the ghost's lease long expired and takes it at once.
    async with candidate(main_port(fake), "replication-a", clock=lambda: time.time() + 10) as a:
        await eventually_async(lambda: a.leads, timeout_s=0.5)


async def test_a_leader_steps_down_when_someone_else_wrote_the_lease(fake: FakeApiServer) -> None:
    async with candidate(main_port(fake), "replication-a") as a:
        await eventually_async(lambda: a.leads)
        # Someone else takes the lease (say, a replica whose clock runs ahead).
        version = lease(fake)["metadata"]["resourceVersion"]
        spec = {"holderIdentity": "intruder", "renewTime": micro_time(time.time() + 5)}
        await write(
            fake, "PATCH", LEASE_PATH, {"metadata": {"resourceVersion": version}, "spec": spec}
        )
        # a's next renewal names a stale version: 409, a reads the lease and steps down.
        await eventually_async(lambda: not a.leads, timeout_s=1.0)
        assert a.elector.observed_holder == "intruder"
        await asyncio.sleep(0.2)
        assert not a.leads
    assert lease(fake)["spec"]["holderIdentity"] == "intruder"


async def test_the_fake_rejects_a_write_to_a_stale_version(fake: FakeApiServer) -> None:
    """Compare-and-swap on resourceVersion, which the elector relies on, through the client."""
    async with api_client(main_port(fake)) as api:
        leases = client.CoordinationV1Api(api)
        body = client.V1Lease(metadata=client.V1ObjectMeta(name=LEASE), spec=client.V1LeaseSpec())
        created = await leases.create_namespaced_lease(NS, body)
        assert created.metadata is not None
        patch = {
            "metadata": {"resourceVersion": created.metadata.resource_version},
            "spec": {"holderIdentity": "x"},
        }
        merge = "application/merge-patch+json"
        await leases.patch_namespaced_lease(LEASE, NS, patch, _content_type=merge)
        with pytest.raises(client.ApiException) as raised:
            await leases.patch_namespaced_lease(LEASE, NS, patch, _content_type=merge)
        assert raised.value.status == 409
