"""The storage node's data path: follows its share of the placement, consumes those partitions
from Kafka with assign() (never a consumer group: placement is the controller's job), applies
records to replicas and seals segments when due. A partition it is given without local data is
first bootstrapped from a peer (bootstrap.py); one it is no longer given is deleted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition

from flakehouse.core.kafka import dataset_topic
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.bootstrap import Peer, Transfer, serving_peers
from flakehouse.storage.compaction import merge_segments, pick_run
from flakehouse.storage.metrics import StorageMetrics
from flakehouse.storage.replica import Replica, SealPolicy
from flakehouse.storage.store import SegmentStore

log = logging.getLogger(__name__)
POLL_MS = 200
PartitionKey = tuple[str, int]
# (peer, dataset, partition) -> the peer's sealed segments; see bootstrap.fetch_segments.
FetchSegments = Callable[[Peer, str, int], Awaitable[Transfer]]
BOOTSTRAP_RETRY_S = 1.0


def my_partitions(placement: replication_pb2.Placement, node_id: str) -> set[PartitionKey]:
    return {
        (d.dataset, p.partition)
        for d in placement.datasets
        for p in d.partitions
        if node_id in p.replicas
    }


class StorageNode:
    def __init__(
        self,
        node_id: str,
        store: SegmentStore,
        consumer: AIOKafkaConsumer,
        topic_prefix: str,
        seal_policy: SealPolicy,
        dedupe_window: int,
        metrics: StorageMetrics,
        fetch_segments: FetchSegments | None = None,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.consumer = consumer
        self.topic_prefix = topic_prefix
        self.seal_policy = seal_policy
        self.dedupe_window = dedupe_window
        self.metrics = metrics
        self.replicas: dict[PartitionKey, Replica] = {}
        self._fetch_segments = fetch_segments
        self.bootstrapping: dict[PartitionKey, asyncio.Task[None]] = {}
        self.bootstrap_bytes: dict[PartitionKey, int] = {}
        self._replay: set[PartitionKey] = set()  # no peer could help: replay Kafka instead
        self._peers: dict[PartitionKey, list[Peer]] = {}
        self._desired: set[PartitionKey] | None = None
        self._desired_changed = asyncio.Event()
        self.placement_seen = asyncio.Event()
        self.caught_up = asyncio.Event()
        # Notified whenever records were applied or partitions taken: read-your-writes waits on it.
        self.progress = asyncio.Condition()

    def follow(self, placement: replication_pb2.Placement) -> None:
        """Takes a new placement; the consume loop applies it between polls."""
        self._desired = my_partitions(placement, self.node_id)
        self._peers = serving_peers(placement, self.node_id)
        self._desired_changed.set()
        self.placement_seen.set()

    def topic(self, dataset: str) -> str:
        return dataset_topic(self.topic_prefix, dataset)

    async def run(self) -> None:
        while True:
            if self._desired_changed.is_set():
                self._desired_changed.clear()
                await self._reassign()
                await self._notify()
            if not self.replicas:
                self.caught_up.set()
                await self._desired_changed.wait()
                continue
            batches = await self.consumer.getmany(timeout_ms=POLL_MS, max_records=20_000)
            for tp, messages in batches.items():
                replica = self.replicas.get((tp.topic[len(self.topic_prefix) + 1 :], tp.partition))
                if replica is None:
                    continue
                records = [(m.offset, m.value) for m in messages]
                result = await asyncio.to_thread(replica.apply, records)
                self.metrics.applied(replica, result)
            learned = await self._track_ends()
            if batches or learned:
                await self._notify()
            for replica in list(self.replicas.values()):
                if await asyncio.to_thread(replica.seal_if_due, self.seal_policy):
                    self.metrics.segments_sealed.inc()

    async def _notify(self) -> None:
        async with self.progress:
            self.progress.notify_all()

    async def _reassign(self) -> None:
        desired = self._desired or set()
        for key in set(self.bootstrapping) - desired:
            self.bootstrapping.pop(key).cancel()
        for key in set(self.replicas) - desired:
            # The controller keeps a moving partition's old replica (draining) until the new
            # one is online, so by now the data is served elsewhere: delete it here. Unless no
            # other node serves it (a controller gone wrong): then keep it, just stop following.
            replica = self.replicas.pop(key)
            self.metrics.lag.remove(key[0], str(key[1]))
            self._replay.discard(key)
            self.bootstrap_bytes.pop(key, None)
            served_elsewhere = bool(self._peers.get(key))
            if served_elsewhere:
                await asyncio.to_thread(self.store.drop_partition, *key)
            else:
                await asyncio.to_thread(replica.seal_if_due, self.seal_policy, True)
            log.info(
                "released partition",
                extra={"dataset": key[0], "partition": key[1], "deleted": served_elsewhere},
            )
        for key in sorted(desired - set(self.replicas) - set(self.bootstrapping)):
            local = await asyncio.to_thread(self.store.applied_offset, *key)
            can_copy = self._fetch_segments is not None and bool(self._peers.get(key))
            if local is None and can_copy and key not in self._replay:
                self.bootstrapping[key] = asyncio.ensure_future(self._bootstrap(key))
                continue
            replica = await asyncio.to_thread(
                Replica, key[0], key[1], self.store, self.dedupe_window
            )
            self.replicas[key] = replica
            log.info(
                "took partition",
                extra={"dataset": key[0], "partition": key[1], "offset": replica.next_offset},
            )
        tps = {TopicPartition(self.topic(d), p): r for (d, p), r in self.replicas.items()}
        self.consumer.assign(list(tps))
        for tp, replica in tps.items():
            self.consumer.seek(tp, replica.next_offset)
        if tps:
            self.caught_up.clear()
            await self._track_ends(refresh=True)

    async def _bootstrap(self, key: PartitionKey) -> None:
        """Copies the partition's sealed segments from the first peer that can send them, then
        hands the partition to the consume loop, which resumes Kafka from their offset. While
        peers are listed but failing, tries again; with none left, replays Kafka."""
        started = time.monotonic()
        while self._peers.get(key):
            if await self._copy_from_a_peer(key, started):
                break
            await asyncio.sleep(BOOTSTRAP_RETRY_S)
        else:
            log.warning(
                "no peer to bootstrap from; replaying Kafka",
                extra={"dataset": key[0], "partition": key[1]},
            )
            self._replay.add(key)
        self.bootstrapping.pop(key, None)
        self._desired_changed.set()

    async def _copy_from_a_peer(self, key: PartitionKey, started: float) -> bool:
        assert self._fetch_segments is not None
        dataset, partition = key
        failures = []
        for peer in self._peers.get(key, []):
            try:
                transfer = await self._fetch_segments(peer, dataset, partition)
                await asyncio.to_thread(
                    self.store.install_segments,
                    dataset,
                    partition,
                    transfer.segments,
                    transfer.applied_offset,
                )
            except (grpc.aio.AioRpcError, ValueError) as exc:
                failures.append(f"{peer.node_id}: {exc}")
                continue
            self.bootstrap_bytes[key] = transfer.nbytes
            self.metrics.bootstrap_bytes.inc(transfer.nbytes)
            log.info(
                "bootstrapped from peer",
                extra={
                    "dataset": dataset,
                    "partition": partition,
                    "peer": peer.node_id,
                    "segments": len(transfer.segments),
                    "bytes": transfer.nbytes,
                    "offset": transfer.applied_offset,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            return True
        log.warning(
            "bootstrap failed; retrying",
            extra={"dataset": dataset, "partition": partition, "failures": failures},
        )
        return False

    def state_of(self, key: PartitionKey) -> int:
        """The replica's state for heartbeats (replication_pb2.ReplicaState)."""
        replica = self.replicas.get(key)
        if replica is None:
            return replication_pb2.REPLICA_STATE_BOOTSTRAPPING
        if replica.online:
            return replication_pb2.REPLICA_STATE_ONLINE
        return replication_pb2.REPLICA_STATE_CATCHING_UP

    async def _track_ends(self, refresh: bool = False) -> bool:
        """Updates end offsets (from fetch responses, or asked of the broker) and lag, and notices
        a broker whose end is below what this node applied: a wiped or re-created topic. True
        when a replica learned its end for the first time (a query may be waiting for that)."""
        learned = False
        tps = {TopicPartition(self.topic(d), p): r for (d, p), r in self.replicas.items()}
        ends: Mapping[TopicPartition, int | None]
        if refresh:
            ends = await self.consumer.end_offsets(list(tps))
        else:
            ends = {tp: self.consumer.highwater(tp) for tp in tps}
        for tp, replica in tps.items():
            end = ends.get(tp)
            if end is None:
                continue
            if end < replica.next_offset:
                await self._rebase(tp, replica, end)
                continue
            learned = learned or replica.end_offset < 0
            replica.end_offset = end
            if replica.next_offset >= end:
                replica.online = True
            self.metrics.lag.labels(replica.dataset, str(replica.partition)).set(replica.lag)
        if all(r.end_offset >= 0 and r.next_offset >= r.end_offset for r in self.replicas.values()):
            self.caught_up.set()
        return learned

    async def _rebase(self, tp: TopicPartition, replica: Replica, end: int) -> None:
        beginning = (await self.consumer.beginning_offsets([tp]))[tp]
        note = await asyncio.to_thread(replica.rebase, beginning, end, self.seal_policy)
        self.consumer.seek(tp, beginning)
        self.metrics.broker_behind.inc()
        log.error(note, extra={"dataset": replica.dataset, "partition": replica.partition})

    async def compact(self, min_segments: int) -> int:
        """Merges runs of small sealed segments (under a quarter of the seal size) into one per
        run, off the event loop; queries keep reading their snapshot meanwhile. Returns how many
        segments were merged away."""
        small, most = self.seal_policy.rows // 4, self.seal_policy.rows
        merged_away = 0
        for replica in list(self.replicas.values()):
            key = (replica.dataset, replica.partition)
            metas = await asyncio.to_thread(self.store.segment_metas, *key)
            run = pick_run(metas, small, most, min_segments)
            if not run:
                continue
            sequences = {m.sequence for m in run}

            def merge(sequences: set[int] = sequences, key: PartitionKey = key) -> bool:
                segments = list(self.store.segment_protos(*key, sequences))
                if len(segments) != len(sequences):
                    return False
                return self.store.replace_segments(*key, sequences, merge_segments(segments))

            if await asyncio.to_thread(merge):
                merged_away += len(sequences) - 1
                self.metrics.segments_merged.inc(len(sequences))
        return merged_away

    async def seal_all(self) -> None:
        for replica in self.replicas.values():
            await asyncio.to_thread(replica.seal_if_due, self.seal_policy, True)

    def replica(self, dataset: str, partition: int) -> Replica | None:
        return self.replicas.get((dataset, partition))
