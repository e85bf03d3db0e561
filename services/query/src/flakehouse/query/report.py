"""What an answer says about how it was gathered (QueryResponse.missing_partitions, QueryStats):
the partitions no replica answered and why, and per storage node what it answered and scanned."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flakehouse.common.v1 import plan_pb2
from flakehouse.query.fanout import FanOutResult
from flakehouse.query.v1 import query_pb2
from flakehouse.storage.v1 import storage_pb2


def missing_partitions(dataset: str, result: FanOutResult[Any]) -> list[query_pb2.MissingPartition]:
    return [
        query_pb2.MissingPartition(dataset=dataset, partition=p, reason=reason)
        for p, reason in sorted(result.missing.items())
    ]


def query_stats(
    result: FanOutResult[Any],
    partitions: int,
    elapsed_s: float,
    scan: plan_pb2.ScanStats | None = None,
) -> query_pb2.QueryStats:
    """`scan`: the merged scan of the whole answer, when the query scanned (not DESCRIBE)."""
    return query_pb2.QueryStats(
        scan=scan,
        partitions=partitions,
        nodes_asked=len(result.nodes),
        elapsed_ms=int(elapsed_s * 1000),
        nodes=node_stats(result),
        hedged=result.hedged,
    )


def node_stats(result: FanOutResult[Any]) -> list[query_pb2.NodeStats]:
    scans: dict[str, plan_pb2.ScanStats] = defaultdict(plan_pb2.ScanStats)
    for answer in result.answers:
        if not isinstance(answer.response, storage_pb2.ExecuteFragmentResponse):
            continue  # DescribeFields: no scan
        scan, stats = scans[answer.node_id], answer.response.result.stats
        scan.rows_scanned += stats.rows_scanned
        scan.rows_matched += stats.rows_matched
        scan.segments_scanned += stats.segments_scanned
        scan.segments_skipped += stats.segments_skipped
    return [
        query_pb2.NodeStats(
            node_id=node_id,
            partitions=sorted(trace.partitions),
            elapsed_ms=int(trace.elapsed_s * 1000),
            scan=scans.get(node_id),
            errors=trace.errors,
        )
        for node_id, trace in sorted(result.nodes.items())
    ]
