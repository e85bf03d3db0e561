"""`flakehouse status`: the cluster as the replication controller sees it — storage nodes, then
one line per partition with its replicas, their states and lag — as readable tables or JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from flakehouse.client.links_cli import link_view, render_links
from flakehouse.client.tables import FULL, Fit, format_table
from flakehouse.replication.v1 import replication_pb2

STATE_NAMES = {
    replication_pb2.REPLICA_STATE_BOOTSTRAPPING: "bootstrapping",
    replication_pb2.REPLICA_STATE_CATCHING_UP: "catching up",
    replication_pb2.REPLICA_STATE_ONLINE: "online",
    replication_pb2.REPLICA_STATE_DRAINING: "draining",
}
SERVING = ("online", "draining")


def status_dict(response: replication_pb2.GetReplicaStatusResponse) -> dict[str, Any]:
    """The status as plain data: nodes, partitions with their replicas, and a summary."""
    nodes: list[dict[str, Any]] = [
        {"node_id": n.node_id, "address": n.address, "zone": n.zone, "alive": n.alive}
        for n in response.nodes
    ]
    partitions: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    held: dict[str, int] = defaultdict(int)
    for r in response.replicas:
        partitions[(r.dataset, r.partition)].append(
            {
                "node_id": r.node_id,
                "state": STATE_NAMES.get(r.state, "unknown"),
                "lag": r.lag,
                "applied_offset": r.applied_offset,
                "node_alive": r.node_alive,
            }
        )
        held[r.node_id] += 1
    rows = []
    under = offline = 0
    for (dataset, partition), replicas in sorted(partitions.items()):
        serving = sum(1 for r in replicas if r["state"] in SERVING and r["node_alive"])
        under += serving < response.replication_factor
        offline += serving == 0
        rows.append(
            {"dataset": dataset, "partition": partition, "serving": serving, "replicas": replicas}
        )
    for node in nodes:
        node["replicas"] = held.get(str(node["node_id"]), 0)
    return {
        "replication_factor": response.replication_factor,
        "nodes": nodes,
        "partitions": rows,
        "under_replicated": under,
        "offline": offline,
    }


def render_status_json(
    response: replication_pb2.GetReplicaStatusResponse,
    cluster_id: str | None = None,
    links: Sequence[replication_pb2.LinkStatus] = (),
) -> str:
    """cluster_id: None when the ingest service was not asked (no address for it)."""
    return json.dumps(
        {
            "cluster_id": cluster_id,
            **status_dict(response),
            "links": [link_view(link) for link in links],
        }
    )


def render_status_table(
    response: replication_pb2.GetReplicaStatusResponse,
    fit: Fit = FULL,
    cluster_id: str | None = None,
    links: Sequence[replication_pb2.LinkStatus] = (),
) -> str:
    status = status_dict(response)
    out = [f"cluster {cluster_id}", ""] if cluster_id else []
    out += format_table(
        ["node", "address", "zone", "alive", "replicas"],
        [
            [
                n["node_id"],
                n["address"],
                n["zone"] or "-",
                "yes" if n["alive"] else "NO",
                str(n["replicas"]),
            ]
            for n in status["nodes"]
        ],
        fit=fit,
    )
    out.append("")
    out += format_table(
        ["dataset", "partition", "serving", "replicas (state, lag)"],
        [
            [
                p["dataset"],
                str(p["partition"]),
                f"{p['serving']}/{status['replication_factor']}",
                ", ".join(_replica_text(r) for r in p["replicas"]) or "none",
            ]
            for p in status["partitions"]
        ],
        fit=fit,
    )
    out.append("")
    out.append(
        f"{len(status['partitions'])} partitions, {status['under_replicated']} under-replicated,"
        f" {status['offline']} offline"
    )
    if links:
        out += ["", *render_links(links, fit)]
    return "\n".join(out)


def _replica_text(replica: dict[str, Any]) -> str:
    lag = "lag ?" if replica["lag"] < 0 else f"lag {replica['lag']}"
    dead = ", node down" if not replica["node_alive"] else ""
    return f"{replica['node_id']} ({replica['state']}, {lag}{dead})"
