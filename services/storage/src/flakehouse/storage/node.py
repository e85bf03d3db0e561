"""The storage node's data path: follows its share of the placement, consumes those partitions
from Kafka with assign() (never a consumer group: placement is the controller's job), applies
records to replicas and seals segments when due. A partition it is given without local data is
first bootstrapped from a peer (bootstrap.py); one it is no longer given is deleted, and so is
data of a deleted dataset (identity.py). Compaction, usage reports and drops: upkeep.py; which
replica may answer a query: availability.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition

from flakehouse.core.catalog import generation_topic
from flakehouse.core.errors import NotFound
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.availability import NOT_HELD
from flakehouse.storage.bootstrap import Peer, Transfer, serving_peers
from flakehouse.storage.identity import Identities, PartitionKey, identities, to_delete
from flakehouse.storage.metrics import StorageMetrics
from flakehouse.storage.replica import Replica, SealPolicy
from flakehouse.storage.store import SegmentStore
from flakehouse.storage.upkeep import Upkeep
from flakehouse.storage.v1 import storage_pb2

log = logging.getLogger(__name__)
POLL_MS = 200
# (peer, dataset, partition, generation) -> the peer's sealed segments of that generation of the
# dataset; see bootstrap.fetch_segments.
FetchSegments = Callable[[Peer, str, int, int], Awaitable[Transfer]]
BOOTSTRAP_RETRY_S = 1.0


@dataclass(frozen=True)
class HeldPartition:
    """A replica and what its partition holds: rows (sealed and open), stored bytes of the
    sealed segments, and how many there are."""

    replica: Replica
    rows: int
    bytes: int
    sealed_segments: int


@dataclass(frozen=True)
class SealedCopy:
    """What a peer bootstraps a partition from, as of one moment: the sealed segments, the
    offset they reach, the drop watermark, and the batch keys (packed chunks, read with the
    segments)."""

    segments: list[storage_pb2.Segment]
    applied_offset: int
    drop_watermark_us: int
    batch_keys: list[bytes]


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
        self._bootstrap_generation: dict[PartitionKey, int] = {}
        # Copies being written to the store by a thread, which a cancelled bootstrap cannot stop.
        self._installs: dict[PartitionKey, asyncio.Future[None]] = {}
        self.bootstrap_bytes: dict[PartitionKey, int] = {}
        self._replay: set[PartitionKey] = set()  # no peer could help: replay Kafka instead
        self._peers: dict[PartitionKey, list[Peer]] = {}
        self._desired: set[PartitionKey] | None = None
        self._identities = Identities({}, {})
        # What the consumer is assigned: each replica under its dataset's topic.
        self._assigned: dict[TopicPartition, Replica] = {}
        self._desired_changed = asyncio.Event()
        self.placement_seen = asyncio.Event()
        self.caught_up = asyncio.Event()
        # Notified whenever records were applied or partitions taken: read-your-writes waits on it.
        self.progress = asyncio.Condition()
        self.upkeep = Upkeep(store, self.replicas, seal_policy, metrics)

    def follow(self, placement: replication_pb2.Placement) -> None:
        """Takes a new placement; the consume loop applies it between polls."""
        self._desired = my_partitions(placement, self.node_id)
        self._peers = serving_peers(placement, self.node_id)
        self._identities = identities(placement, self.topic_prefix)
        self._desired_changed.set()
        self.placement_seen.set()

    def topic(self, dataset: str) -> str:
        """The topic of the dataset's live generation, as the placement names it."""
        live = self._identities.live.get(dataset)
        return live.topic if live is not None else generation_topic(self.topic_prefix, dataset, 1)

    def generation(self, dataset: str) -> int:
        live = self._identities.live.get(dataset)
        return live.generation if live is not None else 1

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
                replica = self._assigned.get(tp)
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
        known = self._identities
        cancelled = [
            key
            for key in self.bootstrapping
            if key not in desired or self._bootstrap_generation[key] != self.generation(key[0])
        ]
        for key in cancelled:
            self.bootstrapping.pop(key).cancel()
            self._bootstrap_generation.pop(key)
        # A cancelled bootstrap's thread may still be writing what it copied: let it finish, so
        # that what it wrote is judged below like any other local data.
        installs = [self._installs[key] for key in cancelled if key in self._installs]
        if installs:
            await asyncio.wait(installs)
        # A replica is kept while it is wanted and holds the live generation of its dataset.
        released = {
            key: self.replicas.pop(key)
            for key in list(self.replicas)
            if key not in desired or self.replicas[key].generation != self.generation(key[0])
        }
        local = await asyncio.to_thread(self.store.generations)
        local.update({key: r.generation for key, r in released.items()})
        for key in list(local):
            if key in self.replicas or key in self.bootstrapping:
                del local[key]
        # The controller keeps a moving partition's old replica (draining) until the new one is
        # online, so a partition no longer given is served elsewhere by now: delete it here.
        # Unless no other node serves it (a controller gone wrong): then keep it. Data of a
        # deleted dataset goes in any case.
        served = {key for key, peers in self._peers.items() if peers}
        doomed = to_delete(local, desired, known, served)
        for key, replica in released.items():
            self.metrics.lag.remove(key[0], str(key[1]))
            self._replay.discard(key)
            self.bootstrap_bytes.pop(key, None)
            if key not in doomed:
                await asyncio.to_thread(replica.seal_if_due, self.seal_policy, True)
            log.info(
                "released partition",
                extra={
                    "dataset": key[0],
                    "partition": key[1],
                    "generation": replica.generation,
                    "deleted": key in doomed,
                },
            )
        for key in sorted(doomed):
            await asyncio.to_thread(self.store.drop_partition, *key)
            self._replay.discard(key)
            if key in released:
                continue
            log.info(
                "deleted partition",
                extra={
                    "dataset": key[0],
                    "partition": key[1],
                    "generation": local[key],
                    "deleted_dataset": known.stale(key[0], local[key]),
                },
            )
        for key in sorted(desired - set(self.replicas) - set(self.bootstrapping)):
            await self._take(key)
        self._assigned = {
            TopicPartition(self.topic(d), p): r for (d, p), r in self.replicas.items()
        }
        self.consumer.assign(list(self._assigned))
        for tp, replica in self._assigned.items():
            self.consumer.seek(tp, replica.next_offset)
        if self._assigned:
            self.caught_up.clear()
            await self._track_ends(refresh=True)

    async def _take(self, key: PartitionKey) -> None:
        """Starts following a partition given to this node: from its local data, from a peer's
        copy, or from the start of its topic."""
        generation = self.generation(key[0])
        held = await asyncio.to_thread(self.store.generation, *key)
        if held is not None and held < generation:  # deleted above already; never mixed
            await asyncio.to_thread(self.store.drop_partition, *key)
        elif held is not None and held > generation:
            # The catalog went back (Kafka wiped, the name created again): as for a wiped topic
            # (Replica.rebase), keep the stored rows and read the live topic from its beginning;
            # replayed events are dropped by id.
            await asyncio.to_thread(self.store.rebase_offset, *key, 0, generation)
            log.error(
                "local data of a newer generation than the placement's; kept, reading the topic "
                "again from its beginning",
                extra={"dataset": key[0], "partition": key[1], "local": held, "live": generation},
            )
        local = await asyncio.to_thread(self.store.applied_offset, *key)
        can_copy = self._fetch_segments is not None and bool(self._peers.get(key))
        if local is None and can_copy and key not in self._replay:
            self._bootstrap_generation[key] = generation
            self.bootstrapping[key] = asyncio.ensure_future(self._bootstrap(key, generation))
            return
        replica = await asyncio.to_thread(
            Replica, key[0], key[1], self.store, self.dedupe_window, generation
        )
        self.replicas[key] = replica
        log.info(
            "took partition",
            extra={
                "dataset": key[0],
                "partition": key[1],
                "generation": generation,
                "offset": replica.next_offset,
            },
        )

    async def _bootstrap(self, key: PartitionKey, generation: int) -> None:
        """Copies the partition's sealed segments from the first peer that can send them, then
        hands the partition to the consume loop, which resumes Kafka from their offset. While
        peers are listed but failing, tries again; with none left, replays Kafka."""
        started = time.monotonic()
        while self._peers.get(key):
            if await self._copy_from_a_peer(key, generation, started):
                break
            await asyncio.sleep(BOOTSTRAP_RETRY_S)
        else:
            log.warning(
                "no peer to bootstrap from; replaying Kafka",
                extra={"dataset": key[0], "partition": key[1]},
            )
            self._replay.add(key)
        self.bootstrapping.pop(key, None)
        self._bootstrap_generation.pop(key, None)
        self._desired_changed.set()

    async def _copy_from_a_peer(self, key: PartitionKey, generation: int, started: float) -> bool:
        assert self._fetch_segments is not None
        dataset, partition = key
        failures = []
        for peer in self._peers.get(key, []):
            try:
                # The peer refuses unless it holds this generation: a peer still holding the
                # deleted dataset of the same name never seeds the new one.
                transfer = await self._fetch_segments(peer, dataset, partition, generation)
                install = asyncio.ensure_future(
                    asyncio.to_thread(
                        self.store.install_segments,
                        dataset,
                        partition,
                        transfer.segments,
                        transfer.applied_offset,
                        generation,
                        transfer.drop_watermark_us,
                        transfer.batch_keys,
                    )
                )
                self._installs[key] = install
                install.add_done_callback(lambda done: self._forget_install(key, done))
                await asyncio.shield(install)
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

    def _forget_install(self, key: PartitionKey, done: asyncio.Future[None]) -> None:
        if self._installs.get(key) is done:
            del self._installs[key]

    def replica_reports(self) -> list[replication_pb2.ReplicaReport]:
        """What this node holds, for the controller's heartbeat: each replica's progress and
        state, and the partitions still being copied from a peer."""
        reports = [
            replication_pb2.ReplicaReport(
                dataset=r.dataset,
                partition=r.partition,
                applied_offset=r.next_offset,
                end_offset=r.end_offset,
                state=replication_pb2.REPLICA_STATE_ONLINE
                if r.online
                else replication_pb2.REPLICA_STATE_CATCHING_UP,
                bootstrap_bytes=self.bootstrap_bytes.get(key, 0),
                generation=r.generation,
            )
            for key, r in self.replicas.items()
        ]
        reports += [
            replication_pb2.ReplicaReport(
                dataset=key[0],
                partition=key[1],
                applied_offset=-1,
                end_offset=-1,
                state=replication_pb2.REPLICA_STATE_BOOTSTRAPPING,
                generation=self.generation(key[0]),
            )
            for key in self.bootstrapping
        ]
        return reports

    async def _track_ends(self, refresh: bool = False) -> bool:
        """Updates end offsets and lag, and notices a broker whose end is below what this node
        applied: a wiped or re-created topic. True when a replica learned its end for the first
        time (a query may be waiting for that).

        Only a fetch response's high watermark is believed below the applied offset: tansu's
        ListOffsets answers short of the end (kafka.end_offsets), and rebasing on it would read a
        whole topic again. `refresh` also asks ListOffsets, for an end before the first fetch."""
        learned = False
        tps = dict(self._assigned)
        listed = await self.consumer.end_offsets(list(tps)) if refresh else {}
        for tp, replica in tps.items():
            fetched = self.consumer.highwater(tp)
            if fetched is not None and fetched < replica.next_offset:
                await self._rebase(tp, replica, fetched)
                continue
            known = [end for end in (fetched, listed.get(tp)) if end is not None]
            if not known:
                continue
            end = max(known)
            learned = learned or replica.end_offset < 0
            replica.end_offset = end
            replica.track_behind(time.monotonic())
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
        # An empty topic has nothing to read again: the replica is caught up at once (no fetch
        # would bring a record to say so).
        replica.online = replica.next_offset >= end
        self.metrics.broker_behind.inc()
        log.error(note, extra={"dataset": replica.dataset, "partition": replica.partition})

    async def seal_all(self) -> None:
        for replica in self.replicas.values():
            await asyncio.to_thread(replica.seal_if_due, self.seal_policy, True)

    def replica(self, dataset: str, partition: int) -> Replica | None:
        return self.replicas.get((dataset, partition))

    async def held_partitions(self, dataset: str = "") -> list[HeldPartition]:
        """Every replica (of `dataset` when given) with what its partition holds, by dataset
        and partition."""
        held = []
        for replica in sorted(
            (r for r in self.replicas.values() if not dataset or r.dataset == dataset),
            key=lambda r: (r.dataset, r.partition),
        ):
            rows, size, sealed = await asyncio.to_thread(
                self.store.usage, replica.dataset, replica.partition
            )
            held.append(HeldPartition(replica, rows + replica.open_rows(), size, sealed))
        return held

    async def sealed_copy(self, dataset: str, partition: int, generation: int) -> SealedCopy:
        """What a peer bootstraps the partition from: its sealed segments, the offset they
        reach, the drop watermark and the batch keys. Raises NotFound unless this node holds
        `generation` of the dataset (0: the first)."""
        replica = self.replica(dataset, partition)
        if replica is None:
            raise NotFound(f"{dataset}/{partition} is {NOT_HELD}")
        wanted = generation or 1
        if wanted != replica.generation:
            raise NotFound(
                f"generation {wanted} of {dataset}/{partition} is {NOT_HELD} "
                f"(it holds generation {replica.generation})"
            )

        def sealed() -> SealedCopy:
            # Under the replica's lock: the segments and the offset they reach belong together,
            # and so do the batch keys, which only a seal (under this lock) writes: read here,
            # all of them (a later read of a snapshot's iterator would see later seals). The
            # watermark is read after the segments: a drop in between leaves it above what the
            # copy lacks (the receiver declines a little more than it must), never below.
            with replica.lock:
                key = (replica.dataset, replica.partition)
                segments = list(self.store.segment_protos(*key))
                keys = self.store.batch_key_chunks(*key)
                watermark = self.store.drop_watermark(*key)
                return SealedCopy(segments, replica.sealed_offset, watermark, keys)

        return await asyncio.to_thread(sealed)
