"""The changes stream (DESIGN.md §12): a dataset's records from given offsets, per partition in
order, with each record's origin cluster, following the topic as it grows. Another cluster's
link pulls through it; nothing is read ahead of the reader (one fetch at a time, each written
out before the next is asked)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiokafka import TopicPartition

from flakehouse.core.cluster_identity import ORIGIN_HEADER, VIA_HEADER
from flakehouse.core.kafka import KafkaConnection, make_consumer

FETCH_WAIT_MS = 500


@dataclass(frozen=True)
class Change:
    partition: int
    offset: int
    origin: str
    via: tuple[str, ...]  # the clusters it passed through after its origin
    batch: bytes  # empty: a record that originates in the reader or passed through it
    upload_id: str
    end_offset: int


CAUGHT_UP = None  # yielded when a fetch found nothing new: the reader has every record so far


def path_of(
    headers: tuple[tuple[str, bytes], ...] | None, local: str
) -> tuple[str, tuple[str, ...]]:
    """A record's origin and the clusters it passed through since, from its headers; a record
    without an origin header was ingested here (written before clusters had ids)."""
    origin = local
    via: tuple[str, ...] = ()
    for key, value in headers or ():
        if key == ORIGIN_HEADER:
            origin = value.decode()
        elif key == VIA_HEADER and value:
            via = tuple(value.decode().split(","))
    return origin, via


async def read_changes(
    kafka: KafkaConnection,
    client_id: str,
    topic: str,
    from_offsets: Mapping[int, int],
    *,
    local_cluster: str,
    reader_cluster: str,
) -> AsyncIterator[Change | None]:
    """Changes of the partitions of `from_offsets` from those offsets, and CAUGHT_UP after
    every fetch that found nothing new (at most every FETCH_WAIT_MS), so that a reader knows
    it is caught up even when the topic is empty."""
    consumer = make_consumer(kafka, client_id, fetch_wait_ms=FETCH_WAIT_MS)
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in sorted(from_offsets)}
        consumer.assign(list(tps.values()))
        for partition, tp in tps.items():
            consumer.seek(tp, max(0, from_offsets[partition]))
        while True:
            fetched = await consumer.getmany(*tps.values(), timeout_ms=FETCH_WAIT_MS)
            if not any(fetched.values()):
                yield CAUGHT_UP
            for tp, messages in sorted(fetched.items(), key=lambda item: item[0].partition):
                end = consumer.highwater(tp) or 0
                for message in messages:
                    origin, via = path_of(message.headers, local_cluster)
                    excluded = bool(reader_cluster) and (
                        reader_cluster == origin or reader_cluster in via
                    )
                    yield Change(
                        tp.partition,
                        message.offset,
                        origin,
                        via,
                        b"" if excluded else (message.value or b""),
                        (message.key or b"").decode(),
                        end,
                    )
    finally:
        await consumer.stop()
