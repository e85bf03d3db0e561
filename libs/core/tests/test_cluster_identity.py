"""The cluster id on the real broker: created once, read back the same by every later start, and
the same for services that start together on an empty Kafka (the first candidate wins)."""

from __future__ import annotations

import asyncio

import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.core.cluster_identity import (
    CANDIDATE,
    cluster_id,
    first_candidate,
    identity_topic,
    new_cluster_id,
)
from flakehouse.core.kafka import KafkaConnection, make_producer
from flakehouse.core.settings import KafkaSettings

pytestmark = [pytest.mark.processes, pytest.mark.broker]


def test_the_first_candidate_in_the_log_is_the_id() -> None:
    records: list[tuple[bytes | None, bytes | None]] = [
        (b"other", b"x"),
        (CANDIDATE + b"fhc-1", b"fhc-1"),
        (CANDIDATE + b"fhc-2", b"fhc-2"),
    ]
    assert first_candidate(records) == "fhc-1"
    assert first_candidate([]) is None
    assert new_cluster_id() != new_cluster_id()
    assert len(new_cluster_id()) == len("fhc-") + 16


async def test_an_id_is_created_once_and_read_back(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    settings = KafkaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=topic_prefix)
    kafka = KafkaConnection(broker.bootstrap)
    first = await cluster_id(settings, kafka, "test")
    assert first.startswith("fhc-")
    assert await cluster_id(settings, kafka, "test") == first


async def test_services_starting_together_agree(broker: EmbeddedBroker, topic_prefix: str) -> None:
    settings = KafkaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=topic_prefix)
    kafka = KafkaConnection(broker.bootstrap)
    ids = await asyncio.gather(*(cluster_id(settings, kafka, f"s{i}") for i in range(4)))
    assert len(set(ids)) == 1, ids


async def test_a_candidate_written_later_never_changes_the_id(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    settings = KafkaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=topic_prefix)
    kafka = KafkaConnection(broker.bootstrap)
    adopted = await cluster_id(settings, kafka, "test")
    producer = make_producer(kafka, "late")
    await producer.start()
    try:
        await producer.send_and_wait(
            identity_topic(topic_prefix), b"fhc-late", key=CANDIDATE + b"fhc-late"
        )
    finally:
        await producer.stop()
    assert await cluster_id(settings, kafka, "test") == adopted
