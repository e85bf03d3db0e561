"""The ReplicationService servicer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from flakehouse.core.errors import InvalidArgument, Unavailable
from flakehouse.replication.controller import Controller, report_of
from flakehouse.replication.link_manager import LinkManager
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc


class ReplicationApi(replication_pb2_grpc.ReplicationServiceServicer):
    def __init__(
        self,
        controller: Controller,
        heartbeat_interval_s: float,
        refresh: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._controller = controller
        self._heartbeat_interval_s = heartbeat_interval_s
        self._refresh = refresh
        self._clock = clock
        # Set by the app once the cluster's id is known.
        self.links: LinkManager | None = None

    async def RegisterNode(
        self, request: replication_pb2.RegisterNodeRequest, context: Any
    ) -> replication_pb2.RegisterNodeResponse:
        if not request.node_id or not request.address:
            raise InvalidArgument("node_id and address are required")
        membership = self._controller.membership
        membership.register(request.node_id, request.address, request.zone, self._clock())
        self._controller.reconcile(None, self._clock())
        return replication_pb2.RegisterNodeResponse(
            heartbeat_interval_ms=int(self._heartbeat_interval_s * 1000),
            node_timeout_ms=int(membership.node_timeout_s * 1000),
        )

    async def Heartbeat(
        self, request: replication_pb2.HeartbeatRequest, context: Any
    ) -> replication_pb2.HeartbeatResponse:
        reports = {(r.dataset, r.partition): report_of(r) for r in request.replicas}
        known = self._controller.membership.heartbeat(request.node_id, reports, self._clock())
        return replication_pb2.HeartbeatResponse(
            placement_version=self._controller.placement.version, reregister=not known
        )

    async def GetPlacement(
        self, request: replication_pb2.GetPlacementRequest, context: Any
    ) -> replication_pb2.GetPlacementResponse:
        placement = self._controller.placement
        if request.dataset and not any(d.dataset == request.dataset for d in placement.datasets):
            # A dataset created a moment ago: read the catalog now rather than at the next tick.
            await self._refresh()
            placement = self._controller.placement
        if request.dataset:
            filtered = replication_pb2.Placement()
            filtered.CopyFrom(placement)
            del filtered.datasets[:]
            filtered.datasets.extend(d for d in placement.datasets if d.dataset == request.dataset)
            del filtered.retired[:]
            filtered.retired.extend(r for r in placement.retired if r.dataset == request.dataset)
            placement = filtered
        return replication_pb2.GetPlacementResponse(placement=placement)

    async def WatchPlacement(
        self, request: replication_pb2.WatchPlacementRequest, context: Any
    ) -> AsyncIterator[replication_pb2.WatchPlacementResponse]:
        placement = self._controller.placement
        yield replication_pb2.WatchPlacementResponse(placement=placement)
        while True:
            placement = await self._controller.wait_for_change(placement.version)
            yield replication_pb2.WatchPlacementResponse(placement=placement)

    async def GetReplicaStatus(
        self, request: replication_pb2.GetReplicaStatusRequest, context: Any
    ) -> replication_pb2.GetReplicaStatusResponse:
        return replication_pb2.GetReplicaStatusResponse(
            nodes=self._controller.placement.nodes,
            replicas=self._controller.replica_statuses(self._clock()),
            replication_factor=self._controller.replication_factor,
        )

    def _links(self) -> LinkManager:
        if self.links is None:
            raise Unavailable("replication is starting; ask again", retry_after_ms=1000)
        return self.links

    async def AddLink(
        self, request: replication_pb2.AddLinkRequest, context: Any
    ) -> replication_pb2.AddLinkResponse:
        puller = await self._links().add(request)
        return replication_pb2.AddLinkResponse(link=puller.status())

    async def ListLinks(
        self, request: replication_pb2.ListLinksRequest, context: Any
    ) -> replication_pb2.ListLinksResponse:
        links = self._links()
        return replication_pb2.ListLinksResponse(
            links=links.statuses(), cluster_id=links.local_cluster
        )

    async def RemoveLink(
        self, request: replication_pb2.RemoveLinkRequest, context: Any
    ) -> replication_pb2.RemoveLinkResponse:
        await self._links().remove(request.name)
        return replication_pb2.RemoveLinkResponse()
