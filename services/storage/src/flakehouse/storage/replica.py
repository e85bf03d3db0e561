"""One partition held by this node: the open segment, the applied offset, the dedupe window and
the batch keys of the records applied since the last seal.

All methods block (RocksDB, decoding) and are called through asyncio.to_thread. The lock makes a
query's snapshot (sealed segments + open segment) and a seal mutually exclusive, so a query never
sees rows twice or not at all while they move from the open segment into RocksDB."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from flakehouse.common.v1 import events_pb2
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.dedupe import DedupeWindow
from flakehouse.storage.segment import SegmentView
from flakehouse.storage.store import SegmentStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealPolicy:
    rows: int
    bytes: int
    age_s: float


@dataclass(frozen=True)
class ApplyResult:
    rows: int
    duplicates: int
    bad_records: int


class Replica:
    def __init__(
        self,
        dataset: str,
        partition: int,
        store: SegmentStore,
        dedupe_window: int,
        generation: int = 1,
    ) -> None:
        self.dataset = dataset
        self.partition = partition
        # The incarnation of the dataset name this replica holds; written with every seal.
        self.generation = generation
        self._store = store
        held = store.generation(dataset, partition)
        if held is not None and held != generation:
            raise ValueError(
                f"{dataset}/{partition}: the store holds generation {held}, not {generation}"
            )
        self.lock = threading.Lock()
        applied = store.applied_offset(dataset, partition)
        self.sealed_offset = applied or 0
        self.next_offset = self.sealed_offset
        self.end_offset = -1
        # False until the replica first reaches the partition's end: before that its answers
        # would silently miss data, so it declines fragments and the query asks another replica.
        self.online = False
        # Since when (time.monotonic()) the replica has known of records it has not applied;
        # None while it has applied up to the end it knows of.
        self.behind_since: float | None = None
        self.rebases = 0
        self.note = ""
        self.dedupe = DedupeWindow(dedupe_window)
        self.dedupe.add_many(store.recent_event_ids(dataset, partition, dedupe_window))
        self._builder = self._new_builder()
        # Batch keys (first event id → (event count, last event id)) of the records applied
        # since the last seal, written with the next one; the sealed ones are in the store.
        self._batch_keys: dict[int, tuple[int, int]] = {}
        # Since when (time.monotonic()) the open segment has held something to seal: a row, or
        # a batch key alone (a record whose events were all duplicates of single events).
        self._pending_since: float | None = None

    def _new_builder(self) -> SegmentBuilder:
        sequence = self._store.next_sequence(self.dataset, self.partition)
        return SegmentBuilder(self.dataset, self.partition, sequence)

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.next_offset) if self.end_offset >= 0 else -1

    def track_behind(self, now: float) -> None:
        """Starts or ends the time this replica is behind the end it knows of; call it whenever
        either moves."""
        if self.lag <= 0:
            self.behind_since = None
        elif self.behind_since is None:
            self.behind_since = now

    def behind_s(self, now: float) -> float:
        """For how long it has known of records it has not applied (0 when it has none)."""
        return now - self.behind_since if self.behind_since is not None else 0.0

    def _known_batch(self, first_id: int) -> tuple[int, int] | None:
        """(event count, last event id) of an applied record with this first event id, if any."""
        known = self._batch_keys.get(first_id)
        if known is None:
            known = self._store.batch_key(self.dataset, self.partition, first_id)
        return known

    def apply(self, records: list[tuple[int, bytes | None]]) -> ApplyResult:
        """Adds Kafka records in offset order; records below the next offset are replays of
        what is already applied and are ignored."""
        rows = duplicates = bad = 0
        with self.lock:
            for offset, value in records:
                if offset < self.next_offset:
                    continue
                try:
                    batch = events_pb2.EventBatch.FromString(value or b"")
                except DecodeError:
                    bad += 1
                    log.error(
                        "undecodable record skipped",
                        extra={
                            "dataset": self.dataset,
                            "partition": self.partition,
                            "offset": offset,
                        },
                    )
                    self.next_offset = offset + 1
                    continue
                added = self._add(batch, offset)
                rows += added
                duplicates += len(batch.event_ids) - added
                self.next_offset = offset + 1
        return ApplyResult(rows, duplicates, bad)

    def _add(self, batch: events_pb2.EventBatch, offset: int) -> int:
        """Adds the new events of one record to the open segment; returns how many. Under the
        lock.

        A record is the same as one applied before, whatever the delay (a copy that reached this
        cluster by two paths, or appended twice by a puller), when its batch key matches: same
        first event id, event count and last event id. It is dropped whole. Any other record
        goes through the dedupe window, which drops single events seen lately. A record whose
        first id is known with another count or last id is not the same record: only the window
        judges its events, and the key stays the first record's."""
        ids = batch.event_ids
        new_key: tuple[int, tuple[int, int]] | None = None
        if ids:
            shape = (len(ids), ids[-1])
            known = self._known_batch(ids[0])
            if known == shape:
                self._builder.skip(offset)
                return 0
            if known is None:
                new_key = (ids[0], shape)
        seen = self.dedupe.seen(ids)
        added = self._builder.add(batch, offset, seen or None)
        # Also the key of a record whose events were all dropped by the window: they are stored
        # already, so a later copy of the record is rightly dropped whole.
        if new_key is not None:
            self._batch_keys[new_key[0]] = new_key[1]
        if (added or new_key) and self._pending_since is None:
            self._pending_since = time.monotonic()
        self.dedupe.add_many(ids)
        return added

    def seal_if_due(self, policy: SealPolicy, force: bool = False) -> bool:
        """Writes the open segment with the new applied offset and the batch keys of its records
        in one WriteBatch. An open segment with batch keys but no rows is sealed too (only the
        keys and the offset are written), so that those keys are not left to a replay of Kafka,
        which may no longer hold the records. True when a segment with rows was written."""
        with self.lock:
            builder = self._builder
            if builder.row_count == 0 and not self._batch_keys:
                return False
            age = time.monotonic() - (self._pending_since or time.monotonic())
            if not (
                force
                or builder.row_count >= policy.rows
                or builder.approx_bytes >= policy.bytes
                or age >= policy.age_s
            ):
                return False
            self._store.seal(builder.seal(), self.next_offset, self.generation, self._batch_keys)
            self.sealed_offset = self.next_offset
            self._builder = self._new_builder()
            self._batch_keys = {}
            self._pending_since = None
            return builder.row_count > 0

    def rebase(self, beginning: int, broker_end: int, policy: SealPolicy) -> str:
        """The broker's end fell below what this replica applied: the topic was wiped or
        re-created, so its offsets count again from `beginning` and name other records.

        Policy: keep every row already stored (Kafka may no longer have them), seal the open
        segment, and read the topic again from its beginning. Records this replica already holds
        come back with the same event ids and are dropped whole by their batch keys (kept by the
        seal and the rebase), or event by event by the dedupe window; new records are applied.
        Until it reaches the end again the replica declines fragments. Returns what was done,
        for logs and partition status."""
        self.seal_if_due(policy, force=True)
        with self.lock:
            applied = self.next_offset
            self._store.rebase_offset(self.dataset, self.partition, beginning, self.generation)
            self.next_offset = self.sealed_offset = beginning
            self.end_offset = broker_end
            self.online = False
            self.rebases += 1
            self.note = (
                f"broker end offset {broker_end} fell below the applied offset {applied} "
                f"(topic wiped or re-created): kept the stored rows, reading again from offset "
                f"{beginning}; replayed events are dropped by id"
            )
            self._builder = self._new_builder()
            return self.note

    def snapshot(self, fields: set[str] | None) -> list[SegmentView]:
        """Every row applied so far, as sealed segments plus the open one."""
        with self.lock:
            views = list(self._store.segments(self.dataset, self.partition, fields))
            if self._builder.row_count:
                views.append(self._builder.view())
            return views

    @property
    def drop_watermark_us(self) -> int:
        """Events older than this may have been deleted by a drop bound (store.drop_watermark)."""
        return self._store.drop_watermark(self.dataset, self.partition)

    def open_rows(self) -> int:
        return self._builder.row_count

    def open_time_range(self) -> tuple[int, int] | None:
        """(oldest, newest) timestamp of the open segment's rows; None while it has none."""
        return self._builder.time_range
