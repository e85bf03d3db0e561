"""The StorageService servicer: protobuf in and out of the node and its availability policy
(fragments, field descriptions, partition status, segment transfer)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from flakehouse.core.errors import InvalidArgument, ResourceExhausted
from flakehouse.storage import availability, fragment
from flakehouse.storage.aggregate import TooManyGroups
from flakehouse.storage.availability import Declined
from flakehouse.storage.node import StorageNode
from flakehouse.storage.replica import Replica
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc


def _errors(declined: Iterable[Declined]) -> list[storage_pb2.PartitionError]:
    return [storage_pb2.PartitionError(partition=d.partition, reason=d.reason) for d in declined]


def _progress(replica: Replica) -> storage_pb2.PartitionProgress:
    return storage_pb2.PartitionProgress(
        dataset=replica.dataset,
        partition=replica.partition,
        applied_offset=replica.next_offset,
        end_offset=replica.end_offset,
        behind_ms=int(replica.behind_s(time.monotonic()) * 1000),
    )


class StorageApi(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, node: StorageNode) -> None:
        self._node = node

    async def ExecuteFragment(
        self, request: storage_pb2.ExecuteFragmentRequest, context: Any
    ) -> storage_pb2.ExecuteFragmentResponse:
        minimums: dict[int, int] = {}
        if request.min_offsets:
            if len(request.min_offsets) != len(request.partitions):
                raise InvalidArgument("min_offsets must match partitions one for one")
            minimums = dict(zip(request.partitions, request.min_offsets, strict=True))
        try:
            answer = await availability.execute_fragment(
                self._node,
                request.plan,
                list(request.partitions),
                context.time_remaining,
                minimums,
                max_lag=request.max_lag,
                generation=request.generation,
            )
        except fragment.UnsupportedPlan as exc:
            raise InvalidArgument(str(exc)) from None
        except TooManyGroups as exc:
            raise ResourceExhausted(str(exc)) from None
        return storage_pb2.ExecuteFragmentResponse(
            result=answer.result,
            unavailable=_errors(answer.declined),
            progress=[_progress(r) for r in answer.answered],
        )

    async def DescribeFields(
        self, request: storage_pb2.DescribeFieldsRequest, context: Any
    ) -> storage_pb2.DescribeFieldsResponse:
        fields, declined = await availability.describe_fields(
            self._node, request.dataset, list(request.partitions), request.generation
        )
        return storage_pb2.DescribeFieldsResponse(fields=fields, unavailable=_errors(declined))

    async def GetPartitionStatus(
        self, request: storage_pb2.GetPartitionStatusRequest, context: Any
    ) -> storage_pb2.GetPartitionStatusResponse:
        statuses = [
            storage_pb2.PartitionStatus(
                progress=_progress(held.replica),
                state=storage_pb2.PARTITION_STATE_ONLINE
                if held.replica.online
                else storage_pb2.PARTITION_STATE_CATCHING_UP,
                sealed_segments=held.sealed_segments,
                rows=held.rows,
                bytes=held.bytes,
                rebases=held.replica.rebases,
                note=held.replica.note,
            )
            for held in await self._node.held_partitions(request.dataset)
        ]
        return storage_pb2.GetPartitionStatusResponse(
            node_id=self._node.node_id, partitions=statuses
        )

    async def StreamSegments(
        self, request: storage_pb2.StreamSegmentsRequest, context: Any
    ) -> AsyncIterator[storage_pb2.StreamSegmentsResponse]:
        copy = await self._node.sealed_copy(request.dataset, request.partition, request.generation)
        for segment in copy.segments:
            yield storage_pb2.StreamSegmentsResponse(segment=segment)
        # One chunk at a time off the event loop, so that the sender never holds all the keys.
        for chunk in copy.batch_keys:
            yield storage_pb2.StreamSegmentsResponse(batch_keys=chunk)
        yield storage_pb2.StreamSegmentsResponse(
            applied_offset=copy.applied_offset, drop_watermark_us=copy.drop_watermark_us
        )
