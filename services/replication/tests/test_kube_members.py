"""Storage membership from pods, through the real `kubernetes` client talking HTTP to the fake
API server (kube_fake.py) on 127.0.0.1: pods followed by lists and watches, zones from nodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import kmock

from flakehouse.replication.kube_members import ZONE_LABEL, PodMember, StoragePods
from services.replication.tests.kube_fake import (
    NODES,
    NS,
    PODS,
    Endpoint,
    FakeApiServer,
    api_client,
    main_port,
    running,
    write,
)
from tests.support import eventually_async

SELECTOR = "app.kubernetes.io/component=storage"
SERVICE = "fh-storage"


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
        pods = StoragePods(api, NS, SELECTOR, SERVICE, 7000, **options)
        updates = Updates(pods)
        async with running(pods.run()), running(updates.run()):
            yield pods, updates


def member(name: str, zone: str = "", ready: bool = True, leaving: bool = False) -> PodMember:
    """At the pod's name under the headless Service, which the certificate covers: never its IP."""
    return PodMember(name, f"{name}.{SERVICE}.{NS}.svc:7000", zone, ready, leaving)


async def test_members_follow_pods_being_added_readied_and_deleted(fake: FakeApiServer) -> None:
    fake.objects[NODES, None, "node-a"] = node("node-a", "zone-a")
    fake.objects[NODES, None, "node-b"] = node("node-b", "zone-b")
    await create_pod(fake, pod("storage-0", "10.0.0.1", "node-a"))
    await create_pod(fake, pod("query-0", "10.0.0.9", component="query"))
    async with storage_pods(main_port(fake)) as (pods, updates):
        await asyncio.wait_for(pods.synced.wait(), 3)
        s0 = member("storage-0", "zone-a")
        await updates.until([s0])

        # A new pod is a member once it has an IP (its DNS name resolves from then on); it
        # serves once Ready.
        await create_pod(fake, pod("storage-1", None, "node-b", ready=False))
        await create_pod(fake, pod("query-1", "10.0.0.8", component="query"))
        await patch_pod(fake, "storage-1", {"status": {"podIP": "10.0.0.2"}})
        await updates.until([s0, member("storage-1", "zone-b", ready=False)])
        ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        await patch_pod(fake, "storage-1", ready)
        s1 = member("storage-1", "zone-b")
        await updates.until([s0, s1])

        # A pod being deleted is leaving (not ready) until it is gone.
        await create_pod(fake, pod("storage-2", "10.0.0.3", "node-a", finalizers=["test/hold"]))
        await updates.until([s0, s1, member("storage-2", "zone-a")])
        await delete_pod(fake, "storage-2")
        leaving = member("storage-2", "zone-a", ready=False, leaving=True)
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
    addresses = {m.address for members in updates.seen for m in members}
    assert addresses == {f"storage-{i}.{SERVICE}.{NS}.svc:7000" for i in range(3)}


async def test_a_pod_is_addressed_by_dns_name_whatever_its_ip(fake: FakeApiServer) -> None:
    """The address must be the name the storage certificate covers: a pod IP would fail TLS
    host verification for every caller. A new IP (a restarted pod) changes nothing."""
    await create_pod(fake, pod("storage-0", "10.0.0.1", ready=False))
    async with storage_pods(main_port(fake)) as (_, updates):
        await updates.until([member("storage-0", ready=False)])
        ready = [{"type": "Ready", "status": "True"}]
        await patch_pod(fake, "storage-0", {"status": {"podIP": "10.0.7.7", "conditions": ready}})
        await updates.until([member("storage-0")])
    assert [m.address for members in updates.seen for m in members] == [
        "storage-0.fh-storage.flake.svc:7000",
        "storage-0.fh-storage.flake.svc:7000",
    ]


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
                member("storage-0", "zone-a"),
                member("storage-1", "zone-a"),
                member("storage-2", ""),
                member("storage-3", ""),
            ]
        )
        # More events for the same nodes: published again, their zones not read again.
        not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
        await patch_pod(fake, "storage-0", not_ready)
        await patch_pod(fake, "storage-3", not_ready)
        await eventually_async(lambda: not updates.last[0].ready)
        await eventually_async(lambda: not updates.last[3].ready)
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
        s0, s2 = member("storage-0"), member("storage-2")
        await updates.until([s0, s2])
        assert fake.count(kmock.action.LIST, PODS) == 2
        # The new watch carries on from the new list.
        await delete_pod(fake, "storage-2")
        await updates.until([s0])


async def test_a_watch_that_expires_at_once_is_retried_with_backoff(fake: FakeApiServer) -> None:
    await create_pod(fake, pod("storage-0", "10.0.0.1"))
    fake.expire_every_watch = True
    async with storage_pods(main_port(fake), backoff_initial_s=0.1) as (_, updates):
        await updates.until([member("storage-0")])
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
        await updates.until([member("storage-1")])


async def test_connection_errors_keep_the_last_members_and_retry(fake: FakeApiServer) -> None:
    await create_pod(fake, pod("storage-0", "10.0.0.1"))
    s0 = member("storage-0")
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
            await updates.until([s0, member("storage-1")])
        assert fake.count(kmock.action.LIST, PODS) == 2
