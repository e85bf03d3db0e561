"""Bootstrapping a replica from a peer: a node given a partition it holds no data of copies the
peer's sealed segments (StorageService.StreamSegments) with the offset they reach and the batch
keys of the records applied, installs them in one WriteBatch, and consumes Kafka from that offset
on. Only when no peer serves the partition does it replay Kafka from the start, whose retention
may be long gone."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field

import grpc

from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)

SERVING = (replication_pb2.REPLICA_STATE_ONLINE, replication_pb2.REPLICA_STATE_DRAINING)


@dataclass(frozen=True)
class Peer:
    node_id: str
    address: str


@dataclass
class Transfer:
    """A partition's sealed segments as a peer sent them, the offset they reach, the peer's
    drop watermark (what it deleted below), and its batch keys (chunks of packed entries,
    SegmentStore.install_segments)."""

    segments: list[storage_pb2.Segment]
    applied_offset: int
    nbytes: int
    drop_watermark_us: int = 0
    batch_keys: list[bytes] = field(default_factory=list)


def serving_peers(
    placement: replication_pb2.Placement, node_id: str
) -> dict[tuple[str, int], list[Peer]]:
    """Per partition, the other nodes that serve it (online or draining, alive), in the
    placement's order."""
    nodes = {n.node_id: n for n in placement.nodes if n.alive}
    return {
        (d.dataset, p.partition): [
            Peer(a.node_id, nodes[a.node_id].address)
            for a in p.assignments
            if a.node_id != node_id and a.node_id in nodes and a.state in SERVING
        ]
        for d in placement.datasets
        for p in d.partitions
    }


async def fetch_segments(
    peer: Peer,
    dataset: str,
    partition: int,
    generation: int,
    timeout_s: float,
    dial: Callable[[str], grpc.aio.Channel],
) -> Transfer:
    """Streams the partition's sealed segments of `generation` of the dataset from `peer`;
    raises grpc.aio.AioRpcError (or ValueError for a stream that does not end with the offset)
    when the copy fails or the peer holds another generation."""
    # A peer holding another generation (a deleted dataset of the same name) refuses with
    # NOT_FOUND rather than seed the new one with it.
    request = storage_pb2.StreamSegmentsRequest(
        dataset=dataset, partition=partition, generation=generation
    )
    async with dial(peer.address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        return await receive(peer, stub.StreamSegments(request, timeout=timeout_s))


async def receive(peer: Peer, items: AsyncIterable[storage_pb2.StreamSegmentsResponse]) -> Transfer:
    """The Transfer a StreamSegments stream carries; ValueError when it ends without the
    applied offset. A peer from before batch keys sends none: the copy then drops replays by
    the dedupe window alone."""
    segments: list[storage_pb2.Segment] = []
    batch_keys: list[bytes] = []
    nbytes = 0
    async for item in items:
        kind = item.WhichOneof("item")
        if kind == "segment":
            segments.append(item.segment)
        elif kind == "batch_keys":
            batch_keys.append(item.batch_keys)
        elif kind == "applied_offset":
            return Transfer(
                segments, item.applied_offset, nbytes, item.drop_watermark_us, batch_keys
            )
        nbytes += item.ByteSize()
    raise ValueError(f"{peer.node_id} ended the segment stream without the applied offset")
