"""The node's RocksDB: sealed segments of every partition it holds, each partition's applied Kafka
offset, dataset generation, drop watermark and batch keys (the records it applied) written
atomically with its data, and a bounded cache of decoded columns. Blocking: the app calls it
through asyncio.to_thread. Key layout: FORMAT.md and layout.py."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from rocksdict import DBCompressionType, Options, Rdict, Snapshot, WriteBatch

from flakehouse.storage import layout
from flakehouse.storage.cache import ColumnCache, lazy_view
from flakehouse.storage.identity import PartitionKey
from flakehouse.storage.retention import expired
from flakehouse.storage.segment import SegmentView
from flakehouse.storage.v1 import storage_pb2

STORE_FORMAT = b"1"
# Batch keys per StreamSegmentsResponse: 64k entries of 20 bytes, about 1.3 MB a message.
KEYS_PER_CHUNK = 65_536


@dataclass
class _Partition:
    offset: int | None = None
    segments: dict[int, layout.SegmentInfo] = field(default_factory=dict)
    # The incarnation of the dataset name the data belongs to; data written before generations
    # existed has no key and counts as the first.
    generation: int = 1
    # The highest drop bound under which segments were deleted: every event deleted was older.
    # 0: nothing deleted by a bound.
    watermark: int = 0


class SegmentStore:
    """All sealed segments of one node, in one RocksDB, plus the applied offset per partition.
    Thread-safe: writes and the in-memory catalog are under one lock; reads of segment data go
    through a RocksDB snapshot taken with the catalog, so a concurrent drop cannot tear a query."""

    def __init__(self, path: str, *, cache_bytes: int = 1 << 30) -> None:
        options = Options(raw_mode=True)
        # Measured on the storage benchmark (FORMAT.md, "Compression"): zstd where most data
        # settles, lz4 (cheap) for recent files in upper levels.
        options.set_compression_type(DBCompressionType.lz4())
        options.set_bottommost_compression_type(DBCompressionType.zstd())
        self._db = Rdict(path, options=options)
        self._lock = threading.RLock()
        self._cache = ColumnCache(cache_bytes)
        # Bumped whenever a partition's segments are deleted or replaced, and part of every cache
        # key, so that a query still reading an older snapshot cannot put stale arrays under a
        # sequence number that gets reused; compaction checks it too (replace_segments).
        self._epochs: dict[PartitionKey, int] = {}
        self._closed = False
        version = self._db.get(layout.VERSION_KEY)
        if version is None:
            self._db.put(layout.VERSION_KEY, STORE_FORMAT)
        elif version != STORE_FORMAT:
            self._db.close()
            raise ValueError(f"store at {path} has format {version!r}, expected {STORE_FORMAT!r}")
        self._partitions: dict[PartitionKey, _Partition] = self._load_catalog()

    def _load_catalog(self) -> dict[PartitionKey, _Partition]:
        """Reads every partition's offset and segment metadata (small records), skipping over the
        segment data with one seek per partition."""
        catalog: dict[PartitionKey, _Partition] = {}
        it = self._db.iter()
        it.seek(layout.PARTITION_PREFIX)
        while it.valid():
            key: bytes = it.key()
            if not key.startswith(layout.PARTITION_PREFIX):
                break
            slash = key.index(b"/", len(layout.PARTITION_PREFIX))
            prefix = key[: slash + 1 + layout.U32.size]
            dataset = key[len(layout.PARTITION_PREFIX) : slash].decode()
            (partition,) = layout.U32.unpack(prefix[slash + 1 :])
            part = catalog.setdefault((dataset, partition), _Partition())
            raw_offset = self._db.get(prefix + layout.OFFSET)
            if raw_offset is not None:
                part.offset = layout.I64.unpack(raw_offset)[0]
            raw_generation = self._db.get(prefix + layout.GENERATION)
            if raw_generation is not None:
                part.generation = layout.U32.unpack(raw_generation)[0]
            raw_watermark = self._db.get(prefix + layout.WATERMARK)
            if raw_watermark is not None:
                part.watermark = layout.I64.unpack(raw_watermark)[0]
            it.seek(prefix + layout.META)
            while it.valid() and it.key().startswith(prefix + layout.META):
                info = layout.decode_meta(it.value())
                part.segments[info.meta.sequence] = info
                it.next()
            it.seek(layout.prefix_end(prefix))
        return catalog

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("segment store is closed")

    # -- reads -------------------------------------------------------------------------------

    def applied_offset(self, dataset: str, partition: int) -> int | None:
        """The next Kafka offset to consume for the partition, or None if it was never written."""
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            return part.offset if part is not None else None

    def partitions(self) -> list[PartitionKey]:
        with self._lock:
            self._check_open()
            return sorted(self._partitions)

    def generation(self, dataset: str, partition: int) -> int | None:
        """The dataset generation of the partition's data, or None when nothing is held."""
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            return part.generation if part is not None else None

    def generations(self) -> dict[PartitionKey, int]:
        """The dataset generation of every partition held."""
        with self._lock:
            self._check_open()
            return {key: part.generation for key, part in self._partitions.items()}

    def drop_watermark(self, dataset: str, partition: int) -> int:
        """The highest bound under which the partition's segments were deleted (drop_expired):
        it lacks events older than that, which a replica that dropped less may still hold. 0
        when none was deleted."""
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            return part.watermark if part is not None else 0

    def epoch(self, dataset: str, partition: int) -> int:
        """Changes whenever any of the partition's segments is deleted or replaced."""
        with self._lock:
            return self._epochs.get((dataset, partition), 0)

    def usage(self, dataset: str, partition: int) -> tuple[int, int, int]:
        """(rows, bytes, sealed segments) of the partition's sealed data."""
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            if part is None:
                return 0, 0, 0
            infos = part.segments.values()
            return sum(i.meta.row_count for i in infos), sum(i.nbytes for i in infos), len(infos)

    def segment_metas(self, dataset: str, partition: int) -> list[storage_pb2.Segment]:
        """Metadata of the partition's sealed segments, oldest first (no data; for retention)."""
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            if part is None:
                return []
            return [part.segments[s].meta for s in sorted(part.segments)]

    def segment_sizes(self, dataset: str, partition: int) -> list[tuple[storage_pb2.Segment, int]]:
        """(metadata, stored bytes) of the partition's sealed segments, oldest first."""
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            if part is None:
                return []
            return [(part.segments[s].meta, part.segments[s].nbytes) for s in sorted(part.segments)]

    def next_sequence(self, dataset: str, partition: int) -> int:
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            if part is None or not part.segments:
                return 0
            return max(part.segments) + 1

    def _snapshot(
        self, dataset: str, partition: int
    ) -> tuple[Snapshot, bytes, list[layout.SegmentInfo], int]:
        prefix = layout.partition_prefix(dataset, partition)
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            infos = [part.segments[s] for s in sorted(part.segments)] if part else []
            epoch = self._epochs.get((dataset, partition), 0)
            return self._db.snapshot(), prefix, infos, epoch

    def _invalidate(self, dataset: str, partition: int, sequences: set[int] | None = None) -> None:
        key = (dataset, partition)
        self._epochs[key] = self._epochs.get(key, 0) + 1
        self._cache.discard(dataset, partition, sequences)

    def segments(
        self, dataset: str, partition: int, fields: set[str] | None = None
    ) -> Iterator[SegmentView]:
        """Views of the partition's sealed segments, oldest first, as of this call. Each view
        decodes its timestamps and `fields` (all when None) on first access, through the cache;
        event ids likewise. Do not keep views beyond a query: they hold a RocksDB snapshot."""
        snap, prefix, infos, epoch = self._snapshot(dataset, partition)
        key = (dataset, partition, epoch)
        return iter([lazy_view(snap, self._cache, key, prefix, info, fields) for info in infos])

    def segment_protos(
        self, dataset: str, partition: int, sequences: set[int] | None = None
    ) -> Iterator[storage_pb2.Segment]:
        """Full sealed segments (all, or those of `sequences`), oldest first, as of this call:
        what a peer bootstraps from, and what compaction merges."""
        snap, prefix, infos, _ = self._snapshot(dataset, partition)
        wanted = [i for i in infos if sequences is None or i.meta.sequence in sequences]
        return (layout.read_segment(snap, prefix, info) for info in wanted)

    def recent_event_ids(self, dataset: str, partition: int, max_ids: int) -> set[int]:
        """Up to `max_ids` event ids of the newest sealed rows, to rebuild the dedupe window."""
        out: set[int] = set()
        views = list(self.segments(dataset, partition, fields=set()))
        for view in reversed(views):
            remaining = max_ids - len(out)
            if remaining <= 0:
                break
            ids = view.event_ids
            out.update(ids[-remaining:].tolist() if remaining < len(ids) else ids.tolist())
        return out

    def batch_key(self, dataset: str, partition: int, first_id: int) -> tuple[int, int] | None:
        """(event count, last event id) of the sealed record whose first event id is `first_id`,
        or None when no such record was sealed. A plain RocksDB get, without the store's lock:
        gets are thread-safe, and the apply path must not wait for another partition's write."""
        self._check_open()
        raw = self._db.get(layout.batch_key(layout.partition_prefix(dataset, partition), first_id))
        if raw is None:
            return None
        count, last_id = layout.BATCH_VALUE.unpack(raw)
        return count, last_id

    def batch_key_chunks(
        self, dataset: str, partition: int, per_chunk: int | None = None
    ) -> list[bytes]:
        """The partition's batch keys as of this call, packed (layout.BATCH_ENTRY) in chunks of
        up to `per_chunk` (None: KEYS_PER_CHUNK): what a peer bootstraps from with the segments.

        Read at once, not lazily: rocksdict's Snapshot.iter() does not hold to its snapshot (it
        sees writes made after the snapshot; its point reads do hold), so keys read later could
        include records sealed after the segments were taken, and a peer would drop those
        records as copies: lost on it. 20 bytes a record, held for the transfer."""
        snap, prefix, _, _ = self._snapshot(dataset, partition)
        return list(layout.batch_key_chunks(snap, prefix, per_chunk or KEYS_PER_CHUNK))

    # -- writes ------------------------------------------------------------------------------

    def seal(
        self,
        segment: storage_pb2.Segment,
        next_offset: int,
        generation: int = 1,
        batch_keys: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        """Makes `segment` durable together with the partition's new applied offset, the
        dataset generation it belongs to and the batch keys of the records applied into it
        (first event id → (event count, last event id)), in one WriteBatch: after a crash either
        all are there or none. A segment without rows only advances the offset (and writes its
        keys). Data of another generation must be deleted first (drop_partition)."""
        dataset, partition = segment.dataset, segment.partition
        prefix = layout.partition_prefix(dataset, partition)
        records = layout.segment_records(prefix, segment) if segment.row_count else []
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            if part is not None and part.generation != generation:
                raise ValueError(
                    f"{dataset}/{partition}: holds generation {part.generation}, not {generation}"
                )
            if part is not None and part.offset is not None and next_offset < part.offset:
                raise ValueError(
                    f"{dataset}/{partition}: offset would go back from {part.offset} "
                    f"to {next_offset}"
                )
            if records and part is not None and segment.sequence in part.segments:
                raise ValueError(f"{dataset}/{partition}: segment {segment.sequence} exists")
            batch = WriteBatch(raw_mode=True)
            for key, value in records:
                batch.put(key, value)
            for first_id, (count, last_id) in (batch_keys or {}).items():
                value = layout.BATCH_VALUE.pack(count, last_id)
                batch.put(layout.batch_key(prefix, first_id), value)
            batch.put(prefix + layout.OFFSET, layout.I64.pack(next_offset))
            batch.put(prefix + layout.GENERATION, layout.U32.pack(generation))
            self._db.write(batch)
            part = self._partitions.setdefault((dataset, partition), _Partition())
            part.offset = next_offset
            part.generation = generation
            if records:
                part.segments[segment.sequence] = layout.decode_meta(records[-1][1])

    def install_segments(
        self,
        dataset: str,
        partition: int,
        segments: Iterable[storage_pb2.Segment],
        applied_offset: int,
        generation: int = 1,
        drop_watermark: int = 0,
        batch_keys: Iterable[bytes] = (),
    ) -> None:
        """Replaces the partition's data with `segments` (from a peer holding `generation` of
        the dataset), its offset, generation, drop watermark (the peer's: its segments lack
        what it deleted below it) and batch keys (chunks of packed entries, batch_key_chunks),
        in one WriteBatch. The whole transfer is held in memory until written."""
        prefix = layout.partition_prefix(dataset, partition)
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(prefix, layout.prefix_end(prefix))
        installed: dict[int, layout.SegmentInfo] = {}
        for segment in segments:
            if segment.dataset != dataset or segment.partition != partition:
                raise ValueError(
                    f"segment of {segment.dataset}/{segment.partition} "
                    f"given for {dataset}/{partition}"
                )
            if segment.sequence in installed:
                raise ValueError(f"segment {segment.sequence} given twice")
            if not segment.row_count:
                continue
            records = layout.segment_records(prefix, segment)
            for key, value in records:
                batch.put(key, value)
            installed[segment.sequence] = layout.decode_meta(records[-1][1])
        for chunk in batch_keys:
            for key, value in layout.batch_key_records(prefix, chunk):
                batch.put(key, value)
        batch.put(prefix + layout.OFFSET, layout.I64.pack(applied_offset))
        batch.put(prefix + layout.GENERATION, layout.U32.pack(generation))
        if drop_watermark > 0:
            batch.put(prefix + layout.WATERMARK, layout.I64.pack(drop_watermark))
        with self._lock:
            self._check_open()
            self._db.write(batch)
            self._partitions[(dataset, partition)] = _Partition(
                applied_offset, installed, generation, drop_watermark
            )
            self._invalidate(dataset, partition)

    def drop_segments(self, dataset: str, partition: int, sequences: Iterable[int]) -> int:
        """Deletes some sealed segments; the applied offset and the batch keys stay. Returns how
        many existed."""
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            if part is None:
                return 0
            return len(self._delete(dataset, partition, part, set(sequences)))

    def drop_expired(
        self, dataset: str, partition: int, before_us: int, generation: int | None = None
    ) -> list[storage_pb2.Segment]:
        """Deletes the sealed segments whose every event is older than `before_us`, in one
        WriteBatch with the raised drop watermark (so that a restart still knows which events
        are gone), and returns their metadata. Chosen and deleted under the store's lock, so
        compaction cannot swap a segment in between; nothing when the partition holds another
        `generation` of the dataset than the bound was meant for. The batch keys of their
        records stay: a late copy of an expired record is still dropped whole."""
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            if part is None or (generation is not None and part.generation != generation):
                return []
            chosen = expired((info.meta for info in part.segments.values()), before_us)
            return self._delete(dataset, partition, part, chosen, watermark=before_us)

    def _delete(
        self,
        dataset: str,
        partition: int,
        part: _Partition,
        sequences: set[int],
        watermark: int = 0,
    ) -> list[storage_pb2.Segment]:
        """Deletes sealed segments of `part` in one WriteBatch: data and metadata go together,
        so after a crash a segment is either whole or gone; a `watermark` above the partition's
        goes in the same batch. Under the lock."""
        prefix = layout.partition_prefix(dataset, partition)
        gone = sorted(s for s in sequences if s in part.segments)
        if not gone:
            return []
        batch = WriteBatch(raw_mode=True)
        for seq in gone:
            layout.delete_segment(batch, prefix, seq)
        raised = watermark > part.watermark
        if raised:
            batch.put(prefix + layout.WATERMARK, layout.I64.pack(watermark))
        self._db.write(batch)
        if raised:
            part.watermark = watermark
        metas = [part.segments.pop(seq).meta for seq in gone]
        self._invalidate(dataset, partition, set(gone))
        return metas

    def replace_segments(
        self,
        dataset: str,
        partition: int,
        old: set[int],
        merged: storage_pb2.Segment,
        epoch: int | None = None,
    ) -> bool:
        """Replaces sealed segments `old` by `merged` (their rows, compacted) in one WriteBatch;
        the merged segment takes the smallest old sequence, so the order of segments holds.
        False, and nothing written, if any of `old` is gone meanwhile (dropped by retention), or
        if the partition's epoch is no longer `epoch` (read before the segments were: a segment
        was deleted since, or the partition deleted and its sequence numbers reused)."""
        prefix = layout.partition_prefix(dataset, partition)
        if merged.sequence != min(old):
            raise ValueError("the merged segment must take the smallest replaced sequence")
        records = layout.segment_records(prefix, merged)
        with self._lock:
            self._check_open()
            part = self._partitions.get((dataset, partition))
            if part is None or not old <= set(part.segments):
                return False
            if epoch is not None and self._epochs.get((dataset, partition), 0) != epoch:
                return False
            batch = WriteBatch(raw_mode=True)
            for seq in old:
                layout.delete_segment(batch, prefix, seq)
            for key, value in records:  # after the deletes: a put of a reused key wins
                batch.put(key, value)
            self._db.write(batch)
            for seq in old:
                del part.segments[seq]
            part.segments[merged.sequence] = layout.decode_meta(records[-1][1])
            self._invalidate(dataset, partition, old)
            return True

    def rebase_offset(
        self, dataset: str, partition: int, offset: int, generation: int | None = None
    ) -> None:
        """Sets the applied offset, also backwards, and the generation (when given) in one
        WriteBatch: for a topic that was wiped or re-created, whose offsets start again below
        what was applied. The sealed segments and the batch keys stay, so that records read
        again are dropped whole."""
        prefix = layout.partition_prefix(dataset, partition)
        with self._lock:
            self._check_open()
            part = self._partitions.setdefault((dataset, partition), _Partition())
            if generation is None:
                generation = part.generation
            batch = WriteBatch(raw_mode=True)
            batch.put(prefix + layout.OFFSET, layout.I64.pack(offset))
            batch.put(prefix + layout.GENERATION, layout.U32.pack(generation))
            self._db.write(batch)
            part.offset = offset
            part.generation = generation

    def drop_partition(self, dataset: str, partition: int) -> None:
        """Deletes everything of the partition, its offset, drop watermark and batch keys
        included."""
        prefix = layout.partition_prefix(dataset, partition)
        with self._lock:
            self._check_open()
            batch = WriteBatch(raw_mode=True)
            batch.delete_range(prefix, layout.prefix_end(prefix))
            self._db.write(batch)
            self._partitions.pop((dataset, partition), None)
            self._invalidate(dataset, partition)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
