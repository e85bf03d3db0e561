"""Topic durability from settings: the replication factor and min.insync.replicas that a
service's KafkaAdmin gives the topics it creates, and settings that cannot work refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flakehouse.core.kafka import KafkaAdmin
from flakehouse.core.settings import KafkaSettings


class FakeAdmin:
    """Stands in for AIOKafkaAdminClient: records CreateTopics, then lists what was created."""

    def __init__(self) -> None:
        self.created: list[Any] = []

    async def list_topics(self) -> list[str]:
        return [t.name for t in self.created]

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {"topic": t.name, "error_code": 0, "partitions": [{}] * t.num_partitions}
            for t in self.created
            if t.name in names
        ]

    async def create_topics(self, topics: list[Any]) -> None:
        self.created.extend(topics)


async def _create(settings: KafkaSettings, compact: bool) -> Any:
    admin = KafkaAdmin.for_settings(settings, "test")
    fake = FakeAdmin()
    admin._admin = fake  # type: ignore[assignment]
    assert await admin.create_topic("flakehouse.ci", 8, compact=compact)
    assert not await admin.create_topic("flakehouse.ci", 8)  # exists: not created again
    (topic,) = fake.created
    return topic


async def test_topics_get_the_replication_factor_and_min_insync_of_the_settings() -> None:
    settings = KafkaSettings(topic_replication_factor=3, topic_min_insync_replicas=2)
    topic = await _create(settings, compact=True)
    assert (topic.num_partitions, topic.replication_factor) == (8, 3)
    assert topic.topic_configs == {"cleanup.policy": "compact", "min.insync.replicas": "2"}


async def test_by_default_one_replica_and_no_insync_setting() -> None:
    topic = await _create(KafkaSettings(), compact=False)
    assert topic.replication_factor == 1 and topic.topic_configs == {}


def test_more_insync_replicas_than_replicas_is_refused() -> None:
    with pytest.raises(ValidationError, match="topic_min_insync_replicas"):
        KafkaSettings(topic_replication_factor=2, topic_min_insync_replicas=3)
