"""How fresh an answer is (QueryResponse.freshness): per partition, the replica that answered
and how far it was behind the end of the partition it knew of, in records and in how long it had
known of them; the answer carries the worst. EXPLAIN asks each partition's first replica
instead, without running the query."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import grpc

from flakehouse.query.fanout import Answer
from flakehouse.query.v1 import query_pb2
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc

# EXPLAIN does not wait long for a replica to say how far behind it is.
STATUS_TIMEOUT_S = 1.0


def records_behind(progress: storage_pb2.PartitionProgress) -> int:
    """Records the replica knew of and had not applied (0 when its end is not known)."""
    if progress.end_offset < 0:
        return 0
    return max(0, progress.end_offset - progress.applied_offset)


def answer_freshness(
    answers: Iterable[Answer[storage_pb2.ExecuteFragmentResponse]],
) -> query_pb2.Freshness:
    partitions = sorted(
        (
            query_pb2.PartitionFreshness(
                partition=progress.partition,
                node_id=answer.node_id,
                records_behind=records_behind(progress),
                behind_ms=progress.behind_ms,
            )
            for answer in answers
            for progress in answer.response.progress
        ),
        key=lambda p: p.partition,
    )
    return query_pb2.Freshness(
        records_behind=max((p.records_behind for p in partitions), default=0),
        behind_ms=max((p.behind_ms for p in partitions), default=0),
        partitions=partitions,
    )


def describe_behind(records: int, behind_ms: int) -> str:
    if records <= 0 and behind_ms <= 0:
        return "up to date"
    return f"{records} records behind for {behind_ms / 1000:.1f} s"


async def first_replica_freshness(
    stub_for: Callable[[str], storage_pb2_grpc.StorageServiceAsyncStub],
    dataset: str,
    live: dict[int, list[replication_pb2.Node]],
) -> dict[int, str]:
    """Per partition with a live replica, how far behind the first one (the one a query asks
    first; `live` as fanout.candidates gives it) says it is ("up to date", "12 records behind
    for 2.3 s"), or why it could not say.
    `stub_for(address)`."""
    first = {partition: nodes[0] for partition, nodes in live.items() if nodes}
    addresses = {node.node_id: node.address for node in first.values()}

    async def status(node_id: str) -> dict[int, storage_pb2.PartitionProgress] | str:
        try:
            response = await stub_for(addresses[node_id]).GetPartitionStatus(
                storage_pb2.GetPartitionStatusRequest(dataset=dataset), timeout=STATUS_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            return f"freshness unknown: {exc.code().name}"
        return {s.progress.partition: s.progress for s in response.partitions}

    node_ids = sorted(addresses)
    statuses = dict(zip(node_ids, await asyncio.gather(*map(status, node_ids)), strict=True))
    described = {}
    for partition, node in first.items():
        known = statuses[node.node_id]
        if isinstance(known, str):
            described[partition] = known
        elif partition not in known:
            described[partition] = "does not hold it yet"
        else:
            progress = known[partition]
            described[partition] = describe_behind(records_behind(progress), progress.behind_ms)
    return described
