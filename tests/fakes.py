"""Fakes of Flakehouse services for in-process servicer tests: what a service under test calls,
served by grpc.aio on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc


class PlacementService(replication_pb2_grpc.ReplicationServiceServicer):
    """The replication service as query sees it: one fixed placement, and a watch that sends it
    once and then holds the stream open."""

    def __init__(self, placement: replication_pb2.Placement) -> None:
        self.placement = placement

    async def GetPlacement(
        self, request: replication_pb2.GetPlacementRequest, context: Any
    ) -> replication_pb2.GetPlacementResponse:
        return replication_pb2.GetPlacementResponse(placement=self.placement)

    async def WatchPlacement(
        self, request: replication_pb2.WatchPlacementRequest, context: Any
    ) -> AsyncIterator[replication_pb2.WatchPlacementResponse]:
        yield replication_pb2.WatchPlacementResponse(placement=self.placement)
        await asyncio.Event().wait()
