"""`flakehouse status` rendering, from a controller's answer."""

from __future__ import annotations

import json

from flakehouse.client.status import render_status_json, render_status_table
from flakehouse.replication.v1 import replication_pb2 as r


def _response() -> r.GetReplicaStatusResponse:
    return r.GetReplicaStatusResponse(
        replication_factor=2,
        nodes=[
            r.Node(node_id="s0", address="127.0.0.1:7610", zone="a", alive=True),
            r.Node(node_id="s1", address="127.0.0.1:7611", alive=False),
            r.Node(node_id="s2", address="127.0.0.1:7612", alive=True),
        ],
        replicas=[
            r.ReplicaStatus(
                dataset="ci",
                partition=0,
                node_id="s0",
                lag=0,
                node_alive=True,
                state=r.REPLICA_STATE_ONLINE,
            ),
            r.ReplicaStatus(
                dataset="ci",
                partition=0,
                node_id="s2",
                lag=-1,
                node_alive=True,
                state=r.REPLICA_STATE_BOOTSTRAPPING,
            ),
            r.ReplicaStatus(
                dataset="ci",
                partition=1,
                node_id="s1",
                lag=3,
                node_alive=False,
                state=r.REPLICA_STATE_ONLINE,
            ),
            r.ReplicaStatus(
                dataset="ci",
                partition=1,
                node_id="s0",
                lag=0,
                node_alive=True,
                state=r.REPLICA_STATE_DRAINING,
            ),
            r.ReplicaStatus(
                dataset="ci",
                partition=1,
                node_id="s2",
                lag=0,
                node_alive=True,
                state=r.REPLICA_STATE_ONLINE,
            ),
        ],
    )


def test_status_counts_serving_replicas_on_live_nodes() -> None:
    status = json.loads(render_status_json(_response()))
    assert [(p["partition"], p["serving"]) for p in status["partitions"]] == [(0, 1), (1, 2)]
    assert status["under_replicated"] == 1 and status["offline"] == 0
    assert {n["node_id"]: n["replicas"] for n in status["nodes"]} == {"s0": 2, "s1": 1, "s2": 2}


def test_status_table_is_readable() -> None:
    text = render_status_table(_response())
    lines = text.splitlines()
    assert lines[0].split() == ["node", "address", "zone", "alive", "replicas"]
    assert lines[3].split() == ["s1", "127.0.0.1:7611", "-", "NO", "1"]
    assert "ci       0          1/2      s0 (online, lag 0), s2 (bootstrapping, lag ?)" in text
    assert "s1 (online, lag 3, node down)" in text
    assert text.endswith("2 partitions, 1 under-replicated, 0 offline")


def test_status_names_the_cluster_when_ingest_said_it() -> None:
    assert json.loads(render_status_json(_response(), "fhc-0123456789abcdef"))["cluster_id"] == (
        "fhc-0123456789abcdef"
    )
    assert json.loads(render_status_json(_response()))["cluster_id"] is None
    text = render_status_table(_response(), cluster_id="fhc-0123456789abcdef")
    assert text.splitlines()[:3] == ["cluster fhc-0123456789abcdef", "", text.splitlines()[2]]
    assert text.splitlines()[2].split()[0] == "node"
