"""KafkaAdmin: the durability from settings (the replication factor and min.insync.replicas of
the topics a service creates, and settings that cannot work refused), retention.ms at creation,
AlterConfigs that keeps the durability configs (it replaces a topic's whole config) and reports
a refusal, and deletion of a topic that is gone."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import IncompatibleBrokerVersion
from pydantic import ValidationError

from flakehouse.core.kafka import KafkaAdmin, KafkaConnection, TopicConfigRefused
from flakehouse.core.settings import KafkaSettings


class FakeAdmin:
    """Stands in for AIOKafkaAdminClient: records requests, answers with set error codes."""

    def __init__(self, alter_error: int = 0, unsupported: bool = False) -> None:
        self.created: list[Any] = []
        self.altered: list[Any] = []
        self.alter_error = alter_error
        self.unsupported = unsupported

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

    async def alter_configs(self, resources: list[Any]) -> list[Any]:
        if self.unsupported:
            raise IncompatibleBrokerVersion("AlterConfigsRequest cannot be used")
        self.altered.extend(resources)
        return [SimpleNamespace(resources=[(self.alter_error, "no", 2, r.name) for r in resources])]

    async def delete_topics(self, names: list[str]) -> Any:
        known = {t.name for t in self.created}
        return SimpleNamespace(topic_error_codes=[(n, 0 if n in known else 3) for n in names])


async def _create(settings: KafkaSettings, compact: bool) -> Any:
    admin = KafkaAdmin.for_settings(settings, KafkaConnection.from_settings(settings), "test")
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


# --- topic configs: retention.ms at creation, AlterConfigs, deletion --------------------------


def admin_with(fake: FakeAdmin, min_insync_replicas: int = 2) -> KafkaAdmin:
    admin = KafkaAdmin(
        KafkaConnection("127.0.0.1:1"), "test", min_insync_replicas=min_insync_replicas
    )
    admin._admin = fake  # type: ignore[assignment]
    return admin


async def test_a_topic_is_created_with_its_retention_and_durability() -> None:
    fake = FakeAdmin()
    assert await admin_with(fake).create_topic("p.ci", 2, configs={"retention.ms": "60000"})
    assert fake.created[0].topic_configs == {"min.insync.replicas": "2", "retention.ms": "60000"}


async def test_alter_sends_the_durability_configs_along() -> None:
    fake = FakeAdmin()
    await admin_with(fake).alter_topic_config("p.ci", {"retention.ms": "60000"})
    (resource,) = fake.altered
    assert resource.name == "p.ci"
    assert resource.configs == {"min.insync.replicas": "2", "retention.ms": "60000"}


@pytest.mark.parametrize("fake", [FakeAdmin(alter_error=44), FakeAdmin(unsupported=True)])
async def test_a_refused_alter_raises_topic_config_refused(fake: FakeAdmin) -> None:
    with pytest.raises(TopicConfigRefused):
        await admin_with(fake).alter_topic_config("p.ci", {"retention.ms": "60000"})


async def test_deleting_a_topic_that_is_gone_is_not_an_error() -> None:
    fake = FakeAdmin()
    admin = admin_with(fake)
    await admin.create_topic("p.ci", 1)
    assert await admin.delete_topic("p.ci")
    assert not await admin.delete_topic("p.gone")
