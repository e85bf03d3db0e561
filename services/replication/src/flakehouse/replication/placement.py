"""Placement of partitions on storage nodes by rendezvous (highest-random-weight) hashing.

Each (node, partition) pair gets a pseudo-random score; a partition lives on the nodes with the
highest scores. A node joining takes only the partitions where it now scores in the top
`replication_factor`, and a node leaving gives up only its own: about 1/n of the partitions move.
When nodes carry zones, the replicas of a partition go to distinct zones first."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    zone: str = ""


@dataclass(frozen=True)
class DatasetTopic:
    dataset: str
    topic: str
    partitions: int
    generation: int = 1


def score(node_id: str, topic: str, partition: int) -> int:
    digest = hashlib.blake2b(f"{node_id}\0{topic}\0{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def replicas_for(
    nodes: Sequence[NodeInfo], topic: str, partition: int, replication_factor: int
) -> list[str]:
    """The node ids holding one partition, best first: highest score per zone, then the rest."""
    ranked = sorted(
        nodes, key=lambda n: (score(n.node_id, topic, partition), n.node_id), reverse=True
    )
    chosen: list[NodeInfo] = []
    zones: set[str] = set()
    for node in ranked:
        if len(chosen) == replication_factor:
            break
        if node.zone and node.zone in zones:
            continue
        chosen.append(node)
        zones.add(node.zone)
    for node in ranked:  # fewer zones than replicas: fill with the best of the rest
        if len(chosen) == replication_factor:
            break
        if node not in chosen:
            chosen.append(node)
    return [node.node_id for node in chosen]


def compute_placement(
    topics: Sequence[DatasetTopic], nodes: Sequence[NodeInfo], replication_factor: int
) -> dict[str, dict[int, list[str]]]:
    """dataset → partition → replica node ids. With no nodes every partition has no replica."""
    return {
        t.dataset: {
            p: replicas_for(nodes, t.topic, p, replication_factor) for p in range(t.partitions)
        }
        for t in sorted(topics, key=lambda t: t.dataset)
    }


def moved_fraction(
    before: Mapping[str, Mapping[int, Sequence[str]]],
    after: Mapping[str, Mapping[int, Sequence[str]]],
) -> float:
    """Share of replica slots that changed node between two placements."""
    total = changed = 0
    for dataset, partitions in before.items():
        for partition, replicas in partitions.items():
            new = set(after.get(dataset, {}).get(partition, ()))
            total += len(replicas)
            changed += len(set(replicas) - new)
    return changed / total if total else 0.0
