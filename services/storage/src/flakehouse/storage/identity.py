"""Dataset identity on a storage node: which incarnation (generation) of each dataset name the
placement has live, and which local partitions hold data the placement says is gone. Pure code.

A name deleted and created again is a new dataset with the next generation and its own topic.
Local data of an older generation than the live one, or of a retired generation, is deleted; a
dataset simply absent from the placement (Kafka wiped, catalog lost) is kept: only an explicit
retirement deletes data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flakehouse.core.catalog import generation_topic
from flakehouse.replication.v1 import replication_pb2

PartitionKey = tuple[str, int]
"""(dataset, partition): a partition as storage keys its replicas and segments."""


@dataclass(frozen=True)
class Incarnation:
    """The live dataset of a name: its generation and the topic that holds it."""

    generation: int
    topic: str


@dataclass(frozen=True)
class Identities:
    """What the placement says about every dataset name it knows."""

    live: dict[str, Incarnation]
    # Name -> the newest deleted generation: data of it or older is to be deleted.
    retired: dict[str, int]

    def stale(self, dataset: str, generation: int) -> bool:
        """True when data of `generation` belongs to a deleted dataset: the name is live with a
        newer generation, or retired at this generation or a later one."""
        retired = self.retired.get(dataset)
        if retired is not None and retired >= generation:
            return True
        live = self.live.get(dataset)
        return live is not None and live.generation > generation


def identities(placement: replication_pb2.Placement, topic_prefix: str) -> Identities:
    """A placement without generations (an older controller) means generation 1, and one
    without topics the generation's usual topic."""
    live = {}
    for d in placement.datasets:
        generation = max(d.generation, 1)
        topic = d.topic or generation_topic(topic_prefix, d.dataset, generation)
        live[d.dataset] = Incarnation(generation, topic)
    retired: dict[str, int] = {}
    for r in placement.retired:
        retired[r.dataset] = max(retired.get(r.dataset, 0), max(r.generation, 1))
    return Identities(live, retired)


def to_delete(
    local: Mapping[PartitionKey, int],
    wanted: set[PartitionKey],
    known: Identities,
    served_elsewhere: set[PartitionKey],
) -> set[PartitionKey]:
    """Of the local partitions (key -> generation of their data), those to delete: data of a
    deleted dataset, and partitions of a live dataset, of its live generation, that this node is
    not given (`wanted`) and that another node serves. Anything else stays, including partitions
    of datasets the placement does not know and of a generation newer than the live one (a
    catalog that went back: the node keeps its rows, see StorageNode)."""
    out = set()
    for key, generation in local.items():
        if known.stale(key[0], generation):
            out.add(key)
            continue
        live = known.live.get(key[0])
        if (
            key not in wanted
            and key in served_elsewhere
            and live is not None
            and live.generation == generation
        ):
            out.add(key)
    return out
