"""EXPLAIN's partition lines: which replicas a query would ask, from the placement alone."""

from __future__ import annotations

from flakehouse.query.explain import explain_response
from flakehouse.query.fanout import candidates
from flakehouse.query.sql import PlannedQuery, parse_statement
from flakehouse.replication.v1 import replication_pb2


def _placement() -> tuple[replication_pb2.DatasetPlacement, dict[str, replication_pb2.Node]]:
    dataset = replication_pb2.DatasetPlacement(
        dataset="ci",
        topic="flakehouse.ci",
        partitions=[
            replication_pb2.PartitionPlacement(partition=0, replicas=["a", "b"]),
            replication_pb2.PartitionPlacement(partition=1, replicas=["b", "c"]),
            replication_pb2.PartitionPlacement(partition=2, replicas=["c", "gone"]),
        ],
    )
    nodes = {
        "a": replication_pb2.Node(node_id="a", address="x:1", alive=True),
        "b": replication_pb2.Node(node_id="b", address="x:2", alive=True),
        "c": replication_pb2.Node(node_id="c", address="x:3", alive=False),
    }
    return dataset, nodes


def _lines(sql: str, minimums: dict[int, int] | None = None) -> list[str]:
    planned = parse_statement(sql, now_us=0)
    assert isinstance(planned, PlannedQuery) and planned.explain
    dataset, nodes = _placement()
    response = explain_response(planned, dataset, nodes, candidates(dataset, nodes), minimums or {})
    assert [c.name for c in response.columns] == ["plan"]
    assert response.plan == planned.plan
    return [row.values[0].string_value for row in response.rows]


def test_explain_names_the_replicas_in_the_order_they_would_be_asked() -> None:
    lines = _lines("EXPLAIN SELECT count(*) FROM ci")
    assert lines[0] == "dataset: ci"
    assert "partitions: 3 (topic flakehouse.ci)" in lines
    assert lines[-3:] == [
        "partition 0: ask a, then b",
        "partition 1: ask b; skip c (down)",
        "partition 2: no live replica (c (down), gone (unknown node)): the answer would be partial",
    ]


def test_explain_shows_the_offsets_a_read_your_writes_query_waits_for() -> None:
    lines = _lines("EXPLAIN SELECT name FROM ci", {0: 41})
    assert "partition 0: ask a, then b; wait for offset 41" in lines
    assert "partition 1: ask b; skip c (down)" in lines
