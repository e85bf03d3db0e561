"""The StorageService servicer: fragments, field descriptions, partition status, segment
transfer. Decoding and execution run off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from flakehouse.core.errors import InvalidArgument, NotFound
from flakehouse.events.timestamps import format_timestamp
from flakehouse.storage import fragment
from flakehouse.storage.node import StorageNode
from flakehouse.storage.replica import Replica
from flakehouse.storage.segment import SegmentView
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc

NOT_HELD = "not held by this node"
# Longest a query waits for a just-taken replica to learn its partition's end offset.
ENDS_WAIT_S = 2.0
# A plan without a start: minus infinity.
NO_START = -(2**63)


def _moment(us: int) -> str:
    try:
        return format_timestamp(us)
    except OverflowError:  # far outside years 1 to 9999
        return f"{us} µs"


def stale_cutoff(replica: Replica, start_us: int | None) -> str | None:
    """Why the replica must not answer a plan starting at `start_us` (None: no time bound to
    check), or None. Below its drop watermark the replica lacks events that the other replica,
    whose segments were cut elsewhere, may still hold: answering would make the result depend
    on the replica. Quota's bounds stay below every fresh query's cutoff, so only a query with
    stale limits (its limits watch broken) gets here."""
    watermark = replica.drop_watermark_us
    if start_us is None or watermark <= 0 or start_us >= watermark:
        return None
    older = (
        "the query has no cutoff"
        if start_us == NO_START
        else f"the query's cutoff {_moment(start_us)} is older"
    )
    return (
        f"deleted events before {_moment(watermark)} (retention or stored-bytes limit); "
        f"{older}: its limits are stale"
    )


class StorageApi(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, node: StorageNode) -> None:
        self._node = node

    def _split(
        self,
        dataset: str,
        partitions: list[int],
        minimums: dict[int, int] | None = None,
        max_lag: int = 0,
        generation: int = 0,
        start_us: int | None = None,
    ) -> tuple[list[Replica], list[storage_pb2.PartitionError]]:
        """The replicas that can answer, and why the others cannot. A replica that has not yet
        caught up declines (its answer would silently miss data), unless it has applied the
        offset the request asks for: then it holds all the caller needs to see. With `max_lag`,
        an online replica further behind than that declines too (the caller has fresher ones).
        With `generation`, a replica of another incarnation of the dataset declines. With
        `start_us` (the plan's time range start, NO_START when it has none), a replica that
        deleted events from there on declines (stale_cutoff)."""
        held, unavailable = [], []
        for partition in partitions:
            replica = self._node.replica(dataset, partition)
            minimum = (minimums or {}).get(partition, -1)
            if replica is None:
                unavailable.append(storage_pb2.PartitionError(partition=partition, reason=NOT_HELD))
            elif generation and replica.generation != generation:
                reason = f"holds generation {replica.generation}, not {generation}"
                unavailable.append(storage_pb2.PartitionError(partition=partition, reason=reason))
            elif (stale := stale_cutoff(replica, start_us)) is not None:
                unavailable.append(storage_pb2.PartitionError(partition=partition, reason=stale))
            elif not replica.online and not (0 <= minimum < replica.next_offset):
                behind = (
                    f"{replica.lag} records behind" if replica.lag >= 0 else "end not known yet"
                )
                reason = f"catching up ({behind})"
                if minimum >= 0:
                    reason = f"has not applied offset {minimum} yet (applied {replica.next_offset})"
                unavailable.append(storage_pb2.PartitionError(partition=partition, reason=reason))
            elif max_lag > 0 and replica.lag > max_lag and not (0 <= minimum < replica.next_offset):
                reason = f"lagging {replica.lag} records behind (more than {max_lag})"
                unavailable.append(storage_pb2.PartitionError(partition=partition, reason=reason))
            else:
                held.append(replica)
        return held, unavailable

    @staticmethod
    def _progress(replica: Replica) -> storage_pb2.PartitionProgress:
        return storage_pb2.PartitionProgress(
            dataset=replica.dataset,
            partition=replica.partition,
            applied_offset=replica.next_offset,
            end_offset=replica.end_offset,
            behind_ms=int(replica.behind_s(time.monotonic()) * 1000),
        )

    async def _wait_applied(self, dataset: str, minimums: dict[int, int], context: Any) -> None:
        """Read-your-writes: waits until this node holds each partition and has applied past
        its minimum offset, or until the call's deadline is close. A partition whose placement
        has only just reached this node counts as not there yet, not as someone else's."""
        remaining = context.time_remaining()
        deadline = time.monotonic() + (remaining * 0.8 if remaining is not None else 5.0)

        def done() -> bool:
            for partition, minimum in minimums.items():
                replica = self._node.replica(dataset, partition)
                if minimum >= 0 and (replica is None or replica.next_offset <= minimum):
                    return False
            return True

        async with self._node.progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._node.progress.wait_for(done), max(deadline - time.monotonic(), 0)
                )

    async def _wait_ends_known(self, dataset: str, partitions: list[int], context: Any) -> None:
        """A replica just taken knows its partition's end only once the broker answered (one
        round trip); a query that arrives in between waits for that, briefly, rather than
        being declined as "catching up" by every replica of a dataset just created."""

        def known() -> bool:
            replicas = (self._node.replica(dataset, p) for p in partitions)
            return all(r is None or r.end_offset >= 0 for r in replicas)

        if known():
            return
        remaining = context.time_remaining()
        wait = min(ENDS_WAIT_S, remaining / 2 if remaining is not None else ENDS_WAIT_S)
        async with self._node.progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._node.progress.wait_for(known), max(wait, 0))

    async def ExecuteFragment(
        self, request: storage_pb2.ExecuteFragmentRequest, context: Any
    ) -> storage_pb2.ExecuteFragmentResponse:
        plan = request.plan
        minimums: dict[int, int] = {}
        if request.min_offsets:
            if len(request.min_offsets) != len(request.partitions):
                raise InvalidArgument("min_offsets must match partitions one for one")
            minimums = dict(zip(request.partitions, request.min_offsets, strict=True))
            await self._wait_applied(plan.dataset, minimums, context)
        await self._wait_ends_known(plan.dataset, list(request.partitions), context)
        start_us = plan.time_range.start_us if plan.time_range.HasField("start_us") else NO_START
        held, unavailable = self._split(
            plan.dataset,
            list(request.partitions),
            minimums,
            request.max_lag,
            request.generation,
            start_us,
        )
        try:
            fields = fragment.fields_needed(plan)
            result, held, declined = await asyncio.to_thread(
                self._execute, plan, held, fields, start_us
            )
        except fragment.UnsupportedPlan as exc:
            raise InvalidArgument(str(exc)) from None
        return storage_pb2.ExecuteFragmentResponse(
            result=result,
            unavailable=[*unavailable, *declined],
            progress=[self._progress(r) for r in held],
        )

    @staticmethod
    def _execute(
        plan: Any, held: list[Replica], fields: set[str], start_us: int
    ) -> tuple[Any, list[Replica], list[storage_pb2.PartitionError]]:
        """Executes over the replicas' snapshots; a replica that dropped below the plan's start
        since _split declines after all. The drop watermark rises in the same write as its
        deletion, so the one read after the snapshot covers every deletion the snapshot shows."""
        views: list[SegmentView] = []
        answered, declined = [], []
        for replica in held:
            snapshot = replica.snapshot(fields)
            stale = stale_cutoff(replica, start_us)
            if stale is not None:
                declined.append(
                    storage_pb2.PartitionError(partition=replica.partition, reason=stale)
                )
                continue
            views.extend(snapshot)
            answered.append(replica)
        return fragment.execute(plan, views), answered, declined

    async def DescribeFields(
        self, request: storage_pb2.DescribeFieldsRequest, context: Any
    ) -> storage_pb2.DescribeFieldsResponse:
        held, unavailable = self._split(
            request.dataset, list(request.partitions), generation=request.generation
        )

        def describe() -> list[Any]:
            views: list[SegmentView] = []
            for replica in held:
                views.extend(replica.snapshot(None))
            return fragment.describe(views)

        fields = await asyncio.to_thread(describe)
        return storage_pb2.DescribeFieldsResponse(fields=fields, unavailable=unavailable)

    async def GetPartitionStatus(
        self, request: storage_pb2.GetPartitionStatusRequest, context: Any
    ) -> storage_pb2.GetPartitionStatusResponse:
        replicas = [
            r
            for r in self._node.replicas.values()
            if not request.dataset or r.dataset == request.dataset
        ]
        statuses = []
        for replica in sorted(replicas, key=lambda r: (r.dataset, r.partition)):
            rows, size, sealed = await asyncio.to_thread(
                self._node.store.usage, replica.dataset, replica.partition
            )
            online = replica.online
            statuses.append(
                storage_pb2.PartitionStatus(
                    progress=self._progress(replica),
                    state=storage_pb2.PARTITION_STATE_ONLINE
                    if online
                    else storage_pb2.PARTITION_STATE_CATCHING_UP,
                    sealed_segments=sealed,
                    rows=rows + replica.open_rows(),
                    bytes=size,
                    rebases=replica.rebases,
                    note=replica.note,
                )
            )
        return storage_pb2.GetPartitionStatusResponse(
            node_id=self._node.node_id, partitions=statuses
        )

    async def StreamSegments(
        self, request: storage_pb2.StreamSegmentsRequest, context: Any
    ) -> AsyncIterator[storage_pb2.StreamSegmentsResponse]:
        replica = self._node.replica(request.dataset, request.partition)
        if replica is None:
            raise NotFound(f"{request.dataset}/{request.partition} is {NOT_HELD}")
        # 0: a caller that names no generation means the first.
        wanted = request.generation or 1
        if wanted != replica.generation:
            raise NotFound(
                f"generation {wanted} of {request.dataset}/{request.partition} is {NOT_HELD} "
                f"(it holds generation {replica.generation})"
            )

        def sealed() -> tuple[list[storage_pb2.Segment], int, int]:
            # Under the replica's lock: the segments and the offset they reach belong together.
            # The watermark is read after the segments: a drop in between leaves it above what
            # the copy lacks (the receiver declines a little more than it must), never below.
            with replica.lock:
                store, key = self._node.store, (replica.dataset, replica.partition)
                segments = list(store.segment_protos(*key))
                return segments, replica.sealed_offset, store.drop_watermark(*key)

        segments, offset, watermark = await asyncio.to_thread(sealed)
        for segment in segments:
            yield storage_pb2.StreamSegmentsResponse(segment=segment)
        yield storage_pb2.StreamSegmentsResponse(applied_offset=offset, drop_watermark_us=watermark)
