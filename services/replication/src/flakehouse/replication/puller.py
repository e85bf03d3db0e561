"""A link's puller (DESIGN.md §12): pulls a dataset's records from the source cluster's changes
stream, appends them to this cluster's topic of the dataset, and checkpoints the source's
offsets only once this cluster's Kafka acknowledged them.

- At most READ_AHEAD_RECORDS records are read ahead, and a chunk is what was read ahead, up to
  CHUNK_BYTES: when this cluster is slow or its quota holds the link back, the gRPC stream's
  flow control holds the source, rather than records piling up here.
- The checkpoint is written at most every CHECKPOINT_EVERY_S, and whenever the source says the
  link is caught up: any checkpoint written after the acknowledgement of what it covers is
  right, and fewer of them keep the checkpoint topic small. A crash loses at most that much
  progress, pulled again.
- The checkpoint names the incarnation (generation) of the source's dataset: a dataset deleted
  and created again on the source is pulled from its beginning, and the source ends a stream
  whose dataset changed under it.
- Each chunk takes an ingest lease of this cluster's quota for the dataset first, as an upload
  would: a link never writes faster than the dataset's limits allow.
- A record is appended with its origin and the clusters it passed through (`via`, this one
  last). The source sends no record that originates here or passed through here (only its
  offset): a record never returns to a cluster that held it, so links loop in no topology. A
  record that reaches this cluster by two paths (A→B→C and A→C) is appended twice, and a crash
  between append and checkpoint pulls the chunk again: storage drops the copies by their
  records' ids (services/storage, batch keys).
- Any failure (source away, token refused, Kafka slow) is recorded and retried from the
  checkpoint after a delay growing to RETRY_MAX_S, or the delay the source asked for."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import DecodeError

from flakehouse.common.v1 import events_pb2
from flakehouse.core.errors import FailedPrecondition, FlakehouseError, ResourceExhausted
from flakehouse.replication.link_source import CAUGHT_UP, SourceDataset, SourceRecord
from flakehouse.replication.v1 import replication_pb2

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024
READ_AHEAD_RECORDS = 64
CHECKPOINT_EVERY_S = 1.0
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0

State = replication_pb2.LinkState


class Source(Protocol):
    async def cluster_id(self) -> str: ...
    async def dataset(self, name: str) -> SourceDataset: ...
    def changes(
        self,
        dataset: SourceDataset,
        name: str,
        from_offsets: Mapping[int, int],
        reader_cluster: str,
    ) -> AsyncIterator[SourceRecord | None]: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class LinkPorts:
    """What a puller works with, handed in by the app (adapters of gRPC and Kafka)."""

    connect: Callable[[replication_pb2.LinkRecord], Source]
    # The local topic of a dataset; NotFound when this cluster has no such dataset.
    local_topic: Callable[[str], Awaitable[str]]
    append: Callable[[str, Sequence[SourceRecord]], Awaitable[None]]
    checkpoint: Callable[[str, replication_pb2.LinkCheckpoint], Awaitable[None]]
    # (dataset, holder, events, bytes): returns when allowed, ResourceExhausted if not yet.
    lease: Callable[[str, str, int, int], Awaitable[None]]
    local_cluster: str


class _End:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class LinkPuller:
    def __init__(
        self,
        link: replication_pb2.LinkRecord,
        checkpoint: replication_pb2.LinkCheckpoint,
        ports: LinkPorts,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.next_offsets: dict[int, int] = dict(checkpoint.next_offsets)
        self.source_generation = checkpoint.source_generation  # 0: not known yet
        self._checkpointed_at = 0.0
        self._unsaved = False
        self._ports = ports
        self._clock = clock
        self.state: int = State.LINK_STATE_STARTING
        self.source_cluster = ""
        self.end_offsets: dict[int, int] = {}
        self.records_pulled = 0
        self.events_pulled = 0
        self.errors = 0
        self.last_error = ""
        self.last_error_at = 0.0
        # The last time every record of the source was here; until the first, the start.
        self.caught_up_at = clock()
        self._mean_events = 1.0

    # -- status --------------------------------------------------------------------------------

    @property
    def lag_records(self) -> int:
        # Copies: the metrics endpoint reads this from another thread.
        offsets, ends = dict(self.next_offsets), dict(self.end_offsets)
        return sum(max(0, end - offsets.get(partition, 0)) for partition, end in ends.items())

    @property
    def lag_events(self) -> int:
        return round(self.lag_records * self._mean_events)

    def lag_seconds(self) -> float:
        if self.state == State.LINK_STATE_CAUGHT_UP:
            return 0.0
        return max(0.0, self._clock() - self.caught_up_at)

    def status(self) -> replication_pb2.LinkStatus:
        link = self.link
        return replication_pb2.LinkStatus(
            name=link.name,
            id=link.id,
            source_address=link.source_address,
            dataset=link.dataset,
            has_token=bool(link.token),
            has_ca=bool(link.ca_pem),
            created_us=link.created_us,
            state=self.state,  # type: ignore[arg-type]
            source_cluster=self.source_cluster,
            lag_records=self.lag_records,
            lag_events=self.lag_events,
            lag_seconds=self.lag_seconds(),
            records_pulled=self.records_pulled,
            events_pulled=self.events_pulled,
            last_error=self.last_error,
            last_error_us=int(self.last_error_at * 1e6),
            next_offsets=dict(self.next_offsets),
            source_generation=self.source_generation,
        )

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            pulled_before = self.records_pulled
            try:
                await self._pull()
                raise FlakehouseError("the source ended the changes stream")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wait = self._failed(exc, delay)
            if self.records_pulled > pulled_before:
                delay = RETRY_MIN_S  # it worked for a while: a new outage starts short again
            await asyncio.sleep(wait)
            delay = min(RETRY_MAX_S, delay * 2)

    def _failed(self, exc: Exception, delay: float) -> float:
        if isinstance(exc, FlakehouseError):
            message = str(exc)
            if exc.retry_after_ms:
                delay = max(delay, exc.retry_after_ms / 1000)
        else:
            log.exception("link failed", extra={"link": self.link.name})
            message = f"{type(exc).__name__}: {exc}"
        self.state = State.LINK_STATE_FAILING
        self.errors += 1
        self.last_error = message
        self.last_error_at = self._clock()
        log.warning(
            "link failed; retrying from its checkpoint",
            extra={"link": self.link.name, "error": message, "retry_in_s": delay},
        )
        return delay

    async def _pull(self) -> None:
        link, ports = self.link, self._ports
        source = ports.connect(link)
        try:
            self.state = State.LINK_STATE_STARTING
            self.source_cluster = await source.cluster_id()
            if self.source_cluster == ports.local_cluster:
                raise FailedPrecondition(
                    f"{link.source_address} is this cluster ({ports.local_cluster}): "
                    "a link pulls from another one"
                )
            dataset = await source.dataset(link.dataset)
            self._follow_generation(dataset.generation)
            topic = await ports.local_topic(link.dataset)
            offsets = {p: self.next_offsets.get(p, 0) for p in range(dataset.partitions)}
            changes = source.changes(dataset, link.dataset, offsets, ports.local_cluster)
            self.state = State.LINK_STATE_PULLING
            queue: asyncio.Queue[SourceRecord | _End | None] = asyncio.Queue(READ_AHEAD_RECORDS)
            reader = asyncio.create_task(_read_into(changes, queue))
            try:
                while True:
                    chunk = await _next_chunk(queue)
                    await self._apply(topic, chunk)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            await source.close()

    def _follow_generation(self, generation: int) -> None:
        if self.source_generation and generation != self.source_generation:
            note = (
                f"the source's dataset was deleted and created again (generation "
                f"{self.source_generation} -> {generation}): pulling it from its beginning"
            )
            log.warning(note, extra={"link": self.link.name})
            self.last_error, self.last_error_at = note, self._clock()
            self.next_offsets, self.end_offsets = {}, {}
        self.source_generation = generation

    async def _apply(self, topic: str, chunk: list[SourceRecord | None]) -> None:
        records = [r for r in chunk if r is not CAUGHT_UP]
        here = self._ports.local_cluster
        # The source leaves out what was here already; checked again, as it costs nothing.
        wanted = [r for r in records if r.batch and here != r.origin and here not in r.via]
        events = sum(map(_events_of, wanted))
        if wanted:
            await self._lease(events, sum(len(r.batch) for r in wanted))
            await self._ports.append(topic, wanted)
        if records:
            for record in records:
                self.next_offsets[record.partition] = record.offset + 1
                self.end_offsets[record.partition] = record.end_offset
            self._unsaved = True
            self.records_pulled += len(wanted)
            self.events_pulled += events
            if self.records_pulled:
                self._mean_events = max(1.0, self.events_pulled / self.records_pulled)
        if self._unsaved and (
            chunk[-1] is CAUGHT_UP or self._clock() - self._checkpointed_at >= CHECKPOINT_EVERY_S
        ):
            saved = replication_pb2.LinkCheckpoint(
                next_offsets=self.next_offsets, source_generation=self.source_generation
            )
            await self._ports.checkpoint(self.link.id, saved)
            self._checkpointed_at, self._unsaved = self._clock(), False
        if chunk[-1] is CAUGHT_UP:
            # Everything the source held when it said so is here now.
            self.end_offsets = {p: self.next_offsets.get(p, 0) for p in self.end_offsets}
        if self.lag_records == 0 and (chunk[-1] is CAUGHT_UP or records):
            self.state = State.LINK_STATE_CAUGHT_UP
            self.caught_up_at = self._clock()
        elif records:
            self.state = State.LINK_STATE_PULLING

    async def _lease(self, events: int, size: int) -> None:
        """Waits until this cluster's quota lets the chunk in: the stream stays open, unread,
        meanwhile, so the source waits too."""
        while True:
            try:
                await self._ports.lease(self.link.dataset, f"link/{self.link.name}", events, size)
                return
            except ResourceExhausted as exc:
                self.state = State.LINK_STATE_THROTTLED
                await asyncio.sleep((exc.retry_after_ms or 1000) / 1000)


def _events_of(record: SourceRecord) -> int:
    try:
        return events_pb2.EventBatch.FromString(record.batch).row_count
    except DecodeError:
        return 0  # storage skips an undecodable record too; its offset still moves


async def _read_into(
    changes: AsyncIterator[SourceRecord | None], queue: asyncio.Queue[SourceRecord | _End | None]
) -> None:
    try:
        async for change in changes:
            await queue.put(change)
        await queue.put(_End(None))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        await queue.put(_End(exc))


async def _next_chunk(
    queue: asyncio.Queue[SourceRecord | _End | None],
) -> list[SourceRecord | None]:
    """The next records read, at least one, then what else was read ahead, up to CHUNK_BYTES; a
    caught-up marker ends a chunk."""
    chunk: list[SourceRecord | None] = []
    size = 0
    item = await queue.get()
    while True:
        if isinstance(item, _End):
            if chunk:
                # Apply what came before the end first; the end is read again next time.
                # (The end is the reader's last item: the queue has room for it again.)
                queue.put_nowait(item)
                return chunk
            if item.error is not None:
                raise item.error
            raise FlakehouseError("the source ended the changes stream")
        chunk.append(item)
        if item is CAUGHT_UP:
            return chunk
        size += len(item.batch)
        if size >= CHUNK_BYTES or queue.empty():
            return chunk
        item = queue.get_nowait()
