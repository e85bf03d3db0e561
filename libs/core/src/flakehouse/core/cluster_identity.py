"""The cluster's identity (DESIGN.md §12): a stable id, created at the cluster's first start and
kept in Kafka, so that every service, and every other cluster, names this one the same way for
as long as its Kafka lives.

It lives in the single-partition compacted topic `<prefix>.__cluster`. A service that finds no
id there writes a candidate under a key of its own (`candidate/<id>`: compaction keeps every
candidate), reads the topic again, and adopts the first candidate in offset order. Several
services starting at once on an empty Kafka may each write one; they all adopt the same first
one, and the others are never read again."""

from __future__ import annotations

import secrets

from flakehouse.core.kafka import KafkaConnection, make_producer, read_state_topic
from flakehouse.core.settings import KafkaSettings

CANDIDATE = b"candidate/"
# The Kafka header of every record of a dataset's topic that names the cluster its events were
# ingested in: ingest writes its own id, a link the id its source gave.
ORIGIN_HEADER = "origin"
# The clusters a record's copy passed through after its origin (comma-separated ids, in order),
# written by the links that appended it; absent on a record ingested where it is.
VIA_HEADER = "via"
ID_PREFIX = "fhc-"


def identity_topic(prefix: str) -> str:
    return f"{prefix}.__cluster"


def new_cluster_id() -> str:
    """`fhc-` and 64 random bits in hex: unique among the clusters that will ever be linked."""
    return ID_PREFIX + secrets.token_hex(8)


def first_candidate(records: list[tuple[bytes | None, bytes | None]]) -> str | None:
    for key, value in records:
        if key is not None and key.startswith(CANDIDATE) and value:
            return value.decode()
    return None


async def cluster_id(settings: KafkaSettings, kafka: KafkaConnection, client_id: str) -> str:
    """This cluster's id, created if Kafka holds none yet."""
    topic = identity_topic(settings.topic_prefix)
    found = first_candidate(await read_state_topic(settings, kafka, client_id, topic))
    if found is not None:
        return found
    candidate = new_cluster_id()
    producer = make_producer(kafka, client_id)
    await producer.start()
    try:
        await producer.send_and_wait(topic, candidate.encode(), key=CANDIDATE + candidate.encode())
    finally:
        await producer.stop()
    adopted = first_candidate(await read_state_topic(settings, kafka, client_id, topic))
    if adopted is None:  # our own write is there at the latest
        raise RuntimeError(f"{topic}: the cluster id written is not read back")
    return adopted
