"""Storage membership from pods and Lease leader election, through the real `kubernetes` client
talking HTTP to a fake API server (kmock's emulator, extended below) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp.test_utils
import attrs
import kmock
import pytest
from kubernetes.aio import client

from flakehouse.replication.kube_lease import LeaseElector, micro_time
from flakehouse.replication.kube_members import ZONE_LABEL, PodMember, StoragePods
from tests.support import eventually_async

NS = "flake"
SELECTOR = "app.kubernetes.io/component=storage"
PODS = kmock.resource("", "v1", "pods")
NODES = kmock.resource("", "v1", "nodes")
LEASES = kmock.resource("coordination.k8s.io", "v1", "leases")
GONE = {
    "type": "ERROR",
    "object": {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "reason": "Expired",
        "message": "too old resource version",
        "code": 410,
    },
}
EXPIRE = {"type": "EXPIRE"}  # internal to the fake: ends open watches with GONE
END = {"type": "END"}  # internal to the fake: ends open watches cleanly, as timeoutSeconds does


# --- The fake API server -------------------------------------------------------------------------


@attrs.mutable
class HistoryBus(kmock.Bus[Any]):
    """kmock's event bus, also keeping every event so that a watch can resume from a version."""

    history: list[tuple[int, dict[str, Any]]] = attrs.field(factory=list)

    async def put(self, *items: Any) -> None:
        for item in items:
            if not isinstance(item, dict):
                continue
            version = item.get("object", {}).get("metadata", {}).get("resourceVersion")
            if version is not None:
                self.history.append((int(version), item))
        await super().put(*items)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based selectors only (`a=b,c!=d,e`), which is all the code under test uses."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif term not in labels:
            return False
    return True


@attrs.define(kw_only=True)
class FakeApiServer(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator keeps objects and streams their events, but has no resource
    versions and ignores label selectors. This adds what a real API server does and the code
    under test relies on: a resourceVersion on every write, a 409 Conflict for a write that names
    a stale resourceVersion, label selectors on list and watch, watches resumed from a version
    (410 Gone once that version is compacted), and no event lost between a watch's start and its
    stream."""

    _rv: int = 0
    _compacted: int = 0
    expire_every_watch: bool = False
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(HistoryBus)

    async def _handle(self, request: kmock.Request) -> Any:
        writes = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
        if request.resource is None or request.action not in writes:
            return await super()._handle(request)
        async with self._write_lock:
            self._rv += 1
            version = str(self._rv)
            if request.action == kmock.action.CREATE:
                request.data.setdefault("metadata", {})["resourceVersion"] = version
            else:
                key = (request.resource, request.namespace, request.name)
                stored = self._objects[key] if key in self._objects else None  # noqa: SIM401 (no .get)
                if stored is not None and not stored.deleted:
                    current = stored.get("metadata", {}).get("resourceVersion")
                    if request.action == kmock.action.DELETE:
                        stored.patch({"metadata": {"resourceVersion": version}})
                    else:
                        wanted = (request.data.get("metadata") or {}).get("resourceVersion")
                        if wanted is not None and wanted != current:
                            raise kmock.KubernetesError(
                                status=409, reason="Conflict", message="the object was modified"
                            )
                        request.data.setdefault("metadata", {})["resourceVersion"] = version
            return await super()._handle(request)

    def _matching(self, request: kmock.Request, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        selector = request.params.get("labelSelector", "")
        return (request.namespace is None or meta.get("namespace") == request.namespace) and (
            selector_matches(selector, meta.get("labels") or {})
        )

    def _current(self, request: kmock.Request) -> list[dict[str, Any]]:
        return [
            obj.raw
            for (resource, _, _), obj in self._objects.items()
            if resource == request.resource and not obj.deleted and self._matching(request, obj.raw)
        ]

    async def _serve_list(self, request: kmock.Request) -> Any:
        async with self._write_lock:
            return {"metadata": {"resourceVersion": str(self._rv)}, "items": self._current(request)}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        yield b""  # sends the headers
        since = request.params.get("resourceVersion", "")
        assert request.resource is not None
        bus = self._buses[request.resource]
        async with self._write_lock:
            mark = await bus.mark()
            if self.expire_every_watch:
                backlog = [GONE]
            elif since in ("", "0"):
                backlog = [{"type": "ADDED", "object": obj} for obj in self._current(request)]
            elif int(since) < self._compacted:
                backlog = [GONE]
            else:
                backlog = [event for version, event in bus.history if version > int(since)]
        try:
            for event in backlog:
                if event is GONE:
                    yield GONE
                    return
                if self._matching(request, event["object"]):
                    yield event
            async for event in bus.stream(since=mark):
                if event is EXPIRE:
                    yield GONE
                    return
                if event is END:
                    return
                if self._matching(request, event["object"]):
                    yield event
        finally:
            await bus.unmark(mark)

    async def expire_watches(self) -> None:
        """As after an etcd compaction: open watches end with 410 Gone, and so does any watch
        that resumes from a version before now."""
        async with self._write_lock:
            self._compacted = self._rv
            for bus in list(self._buses.values()):
                await bus.put(EXPIRE)

    async def end_watches(self) -> None:
        for bus in list(self._buses.values()):
            await bus.put(END)

    async def forget(self, resource: kmock.resource, namespace: str | None, name: str) -> None:
        """Deletes an object with no event, as if the event had been compacted away."""
        async with self._write_lock:
            self._rv += 1
            self._objects[resource, namespace, name].delete()

    def count(self, action: kmock.action, resource: kmock.resource, name: str | None = None) -> int:
        return sum(
            1
            for r in self
            if r.action == action and r.resource == resource and (name is None or r.name == name)
        )


class QuickStopServer(aiohttp.test_utils.RawTestServer):
    """aiohttp waits up to 60 s for open requests (here: watches) when a server stops."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> Any:
        runner = await super()._make_runner(debug=debug, **kwargs)
        runner._shutdown_timeout = 0.05
        return runner


class Endpoint:
    """One HTTP endpoint of the fake on 127.0.0.1 (a free port unless given). Stopping it cuts
    the clients that use it off the API server, as a network partition would."""

    def __init__(self, fake: FakeApiServer, port: int | None = None) -> None:
        self._server = kmock.Server(fake, host="127.0.0.1", port=port, server_cls=QuickStopServer)
        self.running = False
        self.port = 0

    async def __aenter__(self) -> Endpoint:
        await self._server.__aenter__()
        self.running = True
        self.port = self._server.port
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self._server.__aexit__(None, None, None)


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    """The fake API server with one endpoint, which the tests also use to write objects."""
    async with FakeApiServer() as server, Endpoint(server):
        server.resources["v1/pods"] = {}
        server.resources["v1/nodes"] = {}
        server.resources["coordination.k8s.io/v1/leases"] = {}
        yield server


def main_port(fake: FakeApiServer) -> int:
    return fake.servers[0].port


@contextlib.asynccontextmanager
async def api_client(port: int) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    async with client.ApiClient(configuration) as api:
        yield api


@contextlib.asynccontextmanager
async def running(coro: Awaitable[None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- Storage pods --------------------------------------------------------------------------------


def pod(
    name: str,
    ip: str | None = "10.0.0.1",
    node: str = "node-a",
    ready: bool = True,
    component: str = "storage",
    finalizers: list[str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Running" if ip else "Pending",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app.kubernetes.io/component": component},
            "finalizers": finalizers or [],
        },
        "spec": {"nodeName": node, "containers": [{"name": component, "image": "flakehouse"}]},
        "status": status,
    }


def node(name: str, zone: str | None) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if zone is not None:
        labels[ZONE_LABEL] = zone
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


async def write(fake: FakeApiServer, method: str, path: str, body: Any = None) -> None:
    async with fake.request(method, path, json=body) as response:
        assert response.status < 300, await response.text()


async def create_pod(fake: FakeApiServer, body: dict[str, Any]) -> None:
    await write(fake, "POST", f"/api/v1/namespaces/{NS}/pods", body)


async def patch_pod(fake: FakeApiServer, name: str, patch: dict[str, Any]) -> None:
    await write(fake, "PATCH", f"/api/v1/namespaces/{NS}/pods/{name}", patch)


async def delete_pod(fake: FakeApiServer, name: str) -> None:
    await write(fake, "DELETE", f"/api/v1/namespaces/{NS}/pods/{name}")


class Updates:
    """Collects what StoragePods.updates() yields."""

    def __init__(self, pods: StoragePods) -> None:
        self.seen: list[list[PodMember]] = []
        self._pods = pods

    async def run(self) -> None:
        async for members in self._pods.updates():
            self.seen.append(members)

    @property
    def last(self) -> list[PodMember]:
        return self.seen[-1] if self.seen else []

    async def until(self, expected: list[PodMember]) -> None:
        await eventually_async(lambda: self.last == expected)


@contextlib.asynccontextmanager
async def storage_pods(port: int, **options: Any) -> AsyncIterator[tuple[StoragePods, Updates]]:
    async with api_client(port) as api:
        pods = StoragePods(api, NS, SELECTOR, 7000, **options)
        updates = Updates(pods)
        async with running(pods.run()), running(updates.run()):
            yield pods, updates


def member(
    name: str, ip: str, zone: str = "", ready: bool = True, leaving: bool = False
) -> PodMember:
    return PodMember(name, f"{ip}:7000", zone, ready, leaving)


async def test_members_follow_pods_being_added_readied_and_deleted(fake: FakeApiServer) -> None:
    fake.objects[NODES, None, "node-a"] = node("node-a", "zone-a")
    fake.objects[NODES, None, "node-b"] = node("node-b", "zone-b")
    await create_pod(fake, pod("storage-0", "10.0.0.1", "node-a"))
    await create_pod(fake, pod("query-0", "10.0.0.9", component="query"))
    async with storage_pods(main_port(fake)) as (pods, updates):
        await asyncio.wait_for(pods.synced.wait(), 3)
        s0 = member("storage-0", "10.0.0.1", "zone-a")
        await updates.until([s0])

        # A new pod is a member once it has an IP; it serves once Ready.
        await create_pod(fake, pod("storage-1", None, "node-b", ready=False))
        await create_pod(fake, pod("query-1", "10.0.0.8", component="query"))
        await patch_pod(fake, "storage-1", {"status": {"podIP": "10.0.0.2"}})
        await updates.until([s0, member("storage-1", "10.0.0.2", "zone-b", ready=False)])
        ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        await patch_pod(fake, "storage-1", ready)
        s1 = member("storage-1", "10.0.0.2", "zone-b")
        await updates.until([s0, s1])

        # A pod being deleted is leaving (not ready) until it is gone.
        await create_pod(fake, pod("storage-2", "10.0.0.3", "node-a", finalizers=["test/hold"]))
        await updates.until([s0, s1, member("storage-2", "10.0.0.3", "zone-a")])
        await delete_pod(fake, "storage-2")
        leaving = member("storage-2", "10.0.0.3", "zone-a", ready=False, leaving=True)
        await updates.until([s0, s1, leaving])
        await patch_pod(fake, "storage-2", {"metadata": {"finalizers": []}})
        await updates.until([s0, s1])
        await delete_pod(fake, "storage-0")
        await updates.until([s1])

    # Each state was announced once, in order; the query pods never were.
    assert [[(m.node_id, m.ready) for m in members] for members in updates.seen] == [
        [("storage-0", True)],
        [("storage-0", True), ("storage-1", False)],
        [("storage-0", True), ("storage-1", True)],
        [("storage-0", True), ("storage-1", True), ("storage-2", True)],
        [("storage-0", True), ("storage-1", True), ("storage-2", False)],
        [("storage-0", True), ("storage-1", True)],
        [("storage-1", True)],
    ]
    assert pods.members() == [s1]


async def test_zone_is_read_once_per_node_and_empty_when_unknown(fake: FakeApiServer) -> None:
    fake.objects[NODES, None, "node-a"] = node("node-a", "zone-a")
    fake.objects[NODES, None, "node-c"] = node("node-c", None)
    await create_pod(fake, pod("storage-0", "10.0.0.1", "node-a"))
    await create_pod(fake, pod("storage-1", "10.0.0.2", "node-a"))
    await create_pod(fake, pod("storage-2", "10.0.0.3", "node-c"))
    await create_pod(fake, pod("storage-3", "10.0.0.4", "node-gone"))
    async with storage_pods(main_port(fake)) as (_, updates):
        await updates.until(
            [
                member("storage-0", "10.0.0.1", "zone-a"),
                member("storage-1", "10.0.0.2", "zone-a"),
                member("storage-2", "10.0.0.3", ""),
                member("storage-3", "10.0.0.4", ""),
            ]
        )
        await patch_pod(fake, "storage-0", {"status": {"podIP": "10.0.1.1"}})
        await patch_pod(fake, "storage-3", {"status": {"podIP": "10.0.1.4"}})
        await eventually_async(lambda: updates.last[0].address == "10.0.1.1:7000")
        await eventually_async(lambda: updates.last[3].address == "10.0.1.4:7000")
    for name in ("node-a", "node-c", "node-gone"):
        assert fake.count(kmock.action.FETCH, NODES, name) == 1, name


async def test_an_expired_watch_is_replaced_by_a_new_list(fake: FakeApiServer) -> None:
    await create_pod(fake, pod("storage-0", "10.0.0.1"))
    await create_pod(fake, pod("storage-1", "10.0.0.2"))
    async with storage_pods(main_port(fake)) as (_, updates):
        await eventually_async(lambda: len(updates.last) == 2)
        await eventually_async(lambda: fake.count(kmock.action.WATCH, PODS) == 1)
        await create_pod(fake, pod("storage-2", "10.0.0.3"))
        await eventually_async(lambda: len(updates.last) == 3)
        assert fake.count(kmock.action.LIST, PODS) == 1
        # Only a new list can tell that storage-1 is gone: its event was compacted away.
        await fake.forget(PODS, NS, "storage-1")
        await fake.expire_watches()
        s0, s2 = member("storage-0", "10.0.0.1"), member("storage-2", "10.0.0.3")
        await updates.until([s0, s2])
        assert fake.count(kmock.action.LIST, PODS) == 2
        # The new watch carries on from the new list.
        await delete_pod(fake, "storage-2")
        await updates.until([s0])


async def test_a_watch_that_expires_at_once_is_retried_with_backoff(fake: FakeApiServer) -> None:
    await create_pod(fake, pod("storage-0", "10.0.0.1"))
    fake.expire_every_watch = True
    async with storage_pods(main_port(fake), backoff_initial_s=0.1) as (_, updates):
        await updates.until([member("storage-0", "10.0.0.1")])
        await asyncio.sleep(0.5)
    # Backoff of 0.1, 0.2, 0.4 s: a handful of lists, not hundreds.
    assert 2 <= fake.count(kmock.action.LIST, PODS) <= 4


async def test_a_watch_that_ends_resumes_from_its_last_version(fake: FakeApiServer) -> None:
    await create_pod(fake, pod("storage-0", "10.0.0.1"))
    async with storage_pods(main_port(fake)) as (_, updates):
        await eventually_async(lambda: fake.count(kmock.action.WATCH, PODS) == 1)
        await create_pod(fake, pod("storage-1", "10.0.0.2"))
        await eventually_async(lambda: len(updates.last) == 2)
        version = fake.objects[PODS, NS, "storage-1"]["metadata"]["resourceVersion"]
        await fake.end_watches()  # as the server does after timeoutSeconds
        await eventually_async(lambda: fake.count(kmock.action.WATCH, PODS) == 2)
        resumed = [r for r in fake if r.action == kmock.action.WATCH][-1]
        assert resumed.params["resourceVersion"] == version
        assert fake.count(kmock.action.LIST, PODS) == 1
        await delete_pod(fake, "storage-0")
        await updates.until([member("storage-1", "10.0.0.2")])


async def test_connection_errors_keep_the_last_members_and_retry(fake: FakeApiServer) -> None:
    await create_pod(fake, pod("storage-0", "10.0.0.1"))
    s0 = member("storage-0", "10.0.0.1")
    backoff = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}
    async with (
        Endpoint(fake) as endpoint,
        storage_pods(endpoint.port, **backoff) as (pods, updates),
    ):
        await updates.until([s0])
        await eventually_async(lambda: fake.count(kmock.action.WATCH, PODS) == 1)
        await endpoint.stop()  # the controller loses the API server
        await create_pod(fake, pod("storage-1", "10.0.0.2"))
        await asyncio.sleep(0.3)
        assert pods.members() == [s0] and updates.last == [s0]
        assert fake.count(kmock.action.LIST, PODS) == 1
        async with Endpoint(fake, endpoint.port):  # back: a new list catches up
            await updates.until([s0, member("storage-1", "10.0.0.2")])
        assert fake.count(kmock.action.LIST, PODS) == 2


# --- Leader election -----------------------------------------------------------------------------

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
