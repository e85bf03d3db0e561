"""The query service's view of the placement: kept current by a WatchPlacement stream, with a
direct GetPlacement for a dataset it has not seen yet (created a moment ago)."""

from __future__ import annotations

import asyncio
import logging

import grpc

from flakehouse.core.errors import NotFound, Unavailable
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc

log = logging.getLogger(__name__)
RETRY_S = 1.0


class Placements:
    def __init__(self, stub: replication_pb2_grpc.ReplicationServiceAsyncStub) -> None:
        self._stub = stub
        self.current: replication_pb2.Placement | None = None
        self.ready = asyncio.Event()

    async def watch_forever(self) -> None:
        while True:
            try:
                async for update in self._stub.WatchPlacement(
                    replication_pb2.WatchPlacementRequest()
                ):
                    self._take(update.placement)
            except grpc.aio.AioRpcError as exc:
                log.warning("placement watch broken; reconnecting", extra={"code": exc.code().name})
            await asyncio.sleep(RETRY_S)

    def _take(self, placement: replication_pb2.Placement) -> None:
        if self.current is None or placement.version >= self.current.version:
            self.current = placement
            self.ready.set()

    def datasets(self) -> list[replication_pb2.DatasetPlacement]:
        return list(self.current.datasets) if self.current else []

    async def lookup(
        self, name: str
    ) -> tuple[replication_pb2.DatasetPlacement, dict[str, replication_pb2.Node]]:
        """A dataset's placement and the nodes it names. A dataset missing from the watched
        placement is asked for directly; the watch brings the full update soon after."""
        placement = self.current
        if placement is None or not any(d.dataset == name for d in placement.datasets):
            try:
                response = await self._stub.GetPlacement(
                    replication_pb2.GetPlacementRequest(dataset=name), timeout=2
                )
            except grpc.aio.AioRpcError as exc:
                raise Unavailable(
                    f"placement unavailable: {exc.details()}", retry_after_ms=1000
                ) from None
            placement = response.placement
        for dataset in placement.datasets:
            if dataset.dataset == name:
                return dataset, {n.node_id: n for n in placement.nodes}
        raise NotFound(f"unknown dataset {name!r}")
