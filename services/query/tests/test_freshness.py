"""The freshness of an answer: per partition the replica that answered and how far behind it
was, the worst of them for the whole answer; and EXPLAIN's word on each first replica."""

from __future__ import annotations

from typing import Any

import grpc

from flakehouse.query.explain import explain_response
from flakehouse.query.fanout import Answer, candidates
from flakehouse.query.freshness import answer_freshness, describe_behind, first_replica_freshness
from flakehouse.query.sql import PlannedQuery, parse_statement
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.v1 import storage_pb2


def progress(
    partition: int, applied: int, end: int, behind_ms: int
) -> storage_pb2.PartitionProgress:
    return storage_pb2.PartitionProgress(
        dataset="ci",
        partition=partition,
        applied_offset=applied,
        end_offset=end,
        behind_ms=behind_ms,
    )


def answer(node_id: str, *progresses: storage_pb2.PartitionProgress) -> Answer[Any]:
    response = storage_pb2.ExecuteFragmentResponse(progress=list(progresses))
    return Answer(
        partition=progresses[0].partition, node_id=node_id, response=response, elapsed_s=0.01
    )


def test_the_answer_carries_each_partition_and_the_worst_of_each_measure() -> None:
    freshness = answer_freshness(
        [
            answer("b", progress(1, 90, 100, 300)),
            answer("a", progress(0, 50, 50, 0)),
            answer("c", progress(2, 7, 9, 1200)),
            answer("a", progress(3, 4, -1, 0)),  # end not known yet: nothing known to miss
        ]
    )
    assert (freshness.records_behind, freshness.behind_ms) == (10, 1200)
    assert [
        (p.partition, p.node_id, p.records_behind, p.behind_ms) for p in freshness.partitions
    ] == [
        (0, "a", 0, 0),
        (1, "b", 10, 300),
        (2, "c", 2, 1200),
        (3, "a", 0, 0),
    ]


def test_a_fresh_answer_says_zero() -> None:
    freshness = answer_freshness([answer("a", progress(0, 5, 5, 0))])
    assert (freshness.records_behind, freshness.behind_ms) == (0, 0)
    assert describe_behind(0, 0) == "up to date"
    assert describe_behind(12, 1500) == "12 records behind for 1.5 s"


class FakeStub:
    def __init__(self, statuses: list[storage_pb2.PartitionStatus] | None) -> None:
        self._statuses = statuses

    async def GetPartitionStatus(
        self, request: storage_pb2.GetPartitionStatusRequest, **options: float
    ) -> storage_pb2.GetPartitionStatusResponse:
        assert request.dataset == "ci" and options["timeout"] > 0
        if self._statuses is None:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down"
            )
        return storage_pb2.GetPartitionStatusResponse(partitions=self._statuses)


def placement() -> tuple[replication_pb2.DatasetPlacement, dict[str, replication_pb2.Node]]:
    dataset = replication_pb2.DatasetPlacement(
        dataset="ci",
        topic="flakehouse.ci",
        partitions=[
            replication_pb2.PartitionPlacement(partition=0, replicas=["a", "b"]),
            replication_pb2.PartitionPlacement(partition=1, replicas=["b", "a"]),
            replication_pb2.PartitionPlacement(partition=2, replicas=["a", "b"]),
            replication_pb2.PartitionPlacement(partition=3, replicas=["gone"]),
        ],
    )
    nodes = {
        "a": replication_pb2.Node(node_id="a", address="x:1", alive=True),
        "b": replication_pb2.Node(node_id="b", address="x:2", alive=True),
    }
    return dataset, nodes


async def test_explain_says_how_far_behind_each_first_replica_is() -> None:
    stubs = {
        "x:1": FakeStub([storage_pb2.PartitionStatus(progress=progress(0, 40, 52, 2300))]),
        "x:2": FakeStub(None),
    }
    dataset, nodes = placement()
    live = candidates(dataset, nodes)
    behind = await first_replica_freshness(stubs.__getitem__, "ci", live)  # type: ignore[arg-type]
    assert behind == {
        0: "12 records behind for 2.3 s",
        1: "freshness unknown: UNAVAILABLE",
        2: "does not hold it yet",
    }
    planned = parse_statement("EXPLAIN SELECT count(*) FROM ci", now_us=0)
    assert isinstance(planned, PlannedQuery)
    lines = [
        r.values[0].string_value
        for r in explain_response(planned, dataset, nodes, live, {}, None, behind).rows
    ]
    assert "partition 0: ask a (12 records behind for 2.3 s), then b" in lines
    assert "partition 1: ask b (freshness unknown: UNAVAILABLE), then a" in lines
