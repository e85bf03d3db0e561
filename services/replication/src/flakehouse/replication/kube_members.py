"""Storage membership from the Kubernetes API: the storage pods of a namespace, listed then
watched, each turned into a member with its DNS address, its zone (from its Node) and readiness."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from kubernetes.aio import client, watch

log = logging.getLogger(__name__)

ZONE_LABEL = "topology.kubernetes.io/zone"
# Set by clusters older than Kubernetes 1.17 and still by some providers.
LEGACY_ZONE_LABEL = "failure-domain.beta.kubernetes.io/zone"
GONE = 410
NOT_FOUND = 404


@dataclass(frozen=True, order=True)
class PodMember:
    node_id: str
    """The pod's name, which the storage node also uses as its node id."""
    address: str
    """host:port of the node's gRPC server: its DNS name, never its IP (pod_address)."""
    zone: str
    """Zone of the pod's Kubernetes Node; empty when unknown."""
    ready: bool
    """Ready and not being deleted. A member that is not ready is leaving or not yet serving."""
    leaving: bool = False
    """Being deleted (deletionTimestamp set)."""


def pod_ready(pod: client.V1Pod) -> bool:
    if pod.metadata is not None and pod.metadata.deletion_timestamp is not None:
        return False
    conditions = (pod.status.conditions if pod.status is not None else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def pod_node_name(pod: client.V1Pod) -> str:
    return (pod.spec.node_name if pod.spec is not None else None) or ""


def node_zone(node: client.V1Node) -> str:
    labels = (node.metadata.labels if node.metadata is not None else None) or {}
    return labels.get(ZONE_LABEL) or labels.get(LEGACY_ZONE_LABEL) or ""


def pod_address(name: str, service: str, namespace: str, grpc_port: int) -> str:
    """The pod's stable name under the StatefulSet's headless Service. Not its IP: clients verify
    the server's certificate against the host they dial, and the certificate can name the pods
    only this way (their IPs are not known in advance). It is also what storage advertises, so
    the follower's registration does not overwrite the node's own with another name."""
    return f"{name}.{service}.{namespace}.svc:{grpc_port}"


def pod_member(
    pod: client.V1Pod, zone: str, *, service: str, namespace: str, grpc_port: int
) -> PodMember | None:
    """None for a pod that cannot be a member yet: no name or no IP (not scheduled or started)."""
    name = pod.metadata.name if pod.metadata is not None else None
    # The IP is not the address, only the sign that the name resolves: the headless Service
    # publishes a pod's DNS record once the pod has an IP (ready or not, as the chart's Service
    # publishes not-ready addresses), so before that the node could not be dialled.
    ip = pod.status.pod_ip if pod.status is not None else None
    if not name or not ip:
        return None
    leaving = pod.metadata is not None and pod.metadata.deletion_timestamp is not None
    address = pod_address(name, service, namespace, grpc_port)
    return PodMember(name, address, zone, pod_ready(pod), leaving)


class StoragePods:
    """Keeps the set of storage members current from a list followed by a watch of the pods.

    `run()` loops until cancelled: a watch that ends is resumed from the last resource version; an
    expired one (410 Gone) is replaced by a fresh list; on any other error the last known members
    are kept and the list is retried with backoff. `updates()` yields the full member list, sorted
    by node id, once the first list has succeeded and again after every change.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        label_selector: str,
        service: str,
        grpc_port: int,
        *,
        watch_timeout_s: int = 300,
        request_timeout_s: float = 30.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.label_selector = label_selector
        self.service = service
        self.grpc_port = grpc_port
        self.watch_timeout_s = watch_timeout_s
        self.request_timeout_s = request_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.synced = asyncio.Event()
        """Set once the first list has succeeded: before that, the member list means nothing."""
        self._pods: dict[str, client.V1Pod] = {}
        self._zones: dict[str, str] = {}
        self._members: list[PodMember] = []
        self._version = 0
        self._changed = asyncio.Condition()
        self._progress = 0  # watch events and clean watch ends so far

    def members(self) -> list[PodMember]:
        return list(self._members)

    async def updates(self) -> AsyncIterator[list[PodMember]]:
        """The member list after the first list, then after each change. A slow consumer skips
        intermediate states and always gets the latest."""
        seen = 0
        while True:
            async with self._changed:
                while self._version == seen:
                    await self._changed.wait()
                seen = self._version
                members = list(self._members)
            yield members

    async def run(self) -> None:
        backoff = self.backoff_initial_s
        while True:
            progress = self._progress
            try:
                resource_version = await self._relist()
                while True:
                    resource_version = await self._watch(resource_version)
            except client.ApiException as exc:
                if exc.status == GONE and self._progress != progress:
                    log.info("storage pods: watch expired, listing again")
                    continue
                # Also a watch that expires before getting anywhere: never spin on it.
                log.warning("storage pods: API error %s %s", exc.status, exc.reason)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("storage pods: %r", exc)
            if self._progress != progress:
                backoff = self.backoff_initial_s
            log.info(
                "storage pods: keeping %d members, retry in %.1fs", len(self._members), backoff
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _relist(self) -> str:
        pods = await self.core.list_namespaced_pod(
            self.namespace,
            label_selector=self.label_selector,
            _request_timeout=float(self.request_timeout_s),
        )
        self._zones.clear()  # refreshed at each list: at start, after an expiry or an error
        self._pods = {p.metadata.name: p for p in pods.items if p.metadata and p.metadata.name}
        await self._publish()
        self.synced.set()
        return (pods.metadata.resource_version if pods.metadata else None) or ""

    async def _watch(self, resource_version: str) -> str:
        """Streams changes until the watch ends; returns the version to resume from."""
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        async with stream:
            try:
                async for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.label_selector,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=int(self.watch_timeout_s),
                    # The server ends the watch after timeout_seconds; this bounds a silent one.
                    _request_timeout=float(self.watch_timeout_s + 30),
                ):
                    kind = event["type"]
                    pod = event["object"]
                    if kind == "BOOKMARK" or not isinstance(pod, client.V1Pod):
                        continue
                    name = pod.metadata.name if pod.metadata else None
                    if not name:
                        continue
                    if kind == "DELETED":
                        self._pods.pop(name, None)
                    else:
                        self._pods[name] = pod
                    self._progress += 1
                    await self._publish()
            except TimeoutError:
                pass  # a watch that outlived its own timeout: resume it
            self._progress += 1
            return str(stream.resource_version or resource_version)

    async def _zone(self, node_name: str) -> str:
        if not node_name:
            return ""
        zone = self._zones.get(node_name)
        if zone is None:
            try:
                node = await self.core.read_node(
                    node_name, _request_timeout=float(self.request_timeout_s)
                )
            except client.ApiException as exc:
                log.warning("storage pods: cannot read node %s: %s", node_name, exc.reason)
                if exc.status != NOT_FOUND:
                    return ""  # not cached: asked again at the next event or list
                zone = self._zones[node_name] = ""
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("storage pods: cannot read node %s: %r", node_name, exc)
                return ""
            else:
                zone = self._zones[node_name] = node_zone(node)
        return zone

    async def _publish(self) -> None:
        members = []
        for pod in self._pods.values():
            member = pod_member(
                pod,
                await self._zone(pod_node_name(pod)),
                service=self.service,
                namespace=self.namespace,
                grpc_port=self.grpc_port,
            )
            if member is not None:
                members.append(member)
        members.sort()
        if members != self._members or self._version == 0:
            async with self._changed:
                self._members = members
                self._version += 1
                self._changed.notify_all()
