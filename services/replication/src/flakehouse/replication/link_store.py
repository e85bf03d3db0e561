"""Where links live: two single-partition compacted topics on this cluster's Kafka. Every
replication replica can read them; only the one that leads writes.

- `<prefix>.__links`: a link's record under its name; removing it writes a tombstone.
- `<prefix>.__link_offsets`: a link's checkpoint under its id, written by its puller only after
  this cluster's Kafka acknowledged what was appended before it."""

from __future__ import annotations

from typing import Any

from flakehouse.core.kafka import KafkaConnection, read_state_topic
from flakehouse.core.settings import KafkaSettings
from flakehouse.replication.v1 import replication_pb2


def links_topic(prefix: str) -> str:
    return f"{prefix}.__links"


def link_offsets_topic(prefix: str) -> str:
    return f"{prefix}.__link_offsets"


class LinkStore:
    def __init__(
        self, settings: KafkaSettings, kafka: KafkaConnection, producer: Any, client_id: str
    ) -> None:
        self._settings = settings
        self._kafka = kafka
        self._producer = producer  # an AIOKafkaProducer, acks=all
        self._client_id = client_id
        self._links = links_topic(settings.topic_prefix)
        self._offsets = link_offsets_topic(settings.topic_prefix)

    async def load(
        self,
    ) -> tuple[dict[str, replication_pb2.LinkRecord], dict[str, replication_pb2.LinkCheckpoint]]:
        """The links (by name) and the checkpoints (by link id), as Kafka holds them now."""
        links: dict[str, replication_pb2.LinkRecord] = {}
        for key, value in await self._read(self._links):
            if key is None:
                continue
            if value:
                links[key.decode()] = replication_pb2.LinkRecord.FromString(value)
            else:
                links.pop(key.decode(), None)
        checkpoints: dict[str, replication_pb2.LinkCheckpoint] = {}
        for key, value in await self._read(self._offsets):
            if key is None:
                continue
            if value:
                checkpoints[key.decode()] = replication_pb2.LinkCheckpoint.FromString(value)
            else:
                checkpoints.pop(key.decode(), None)
        return links, checkpoints

    async def _read(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        return await read_state_topic(self._settings, self._kafka, self._client_id, topic)

    async def put_link(self, link: replication_pb2.LinkRecord) -> None:
        await self._producer.send_and_wait(
            self._links, link.SerializeToString(), key=link.name.encode()
        )

    async def remove_link(self, link: replication_pb2.LinkRecord) -> None:
        """Tombstones for the link and its checkpoint."""
        await self._producer.send_and_wait(self._links, None, key=link.name.encode())
        await self._producer.send_and_wait(self._offsets, None, key=link.id.encode())

    async def checkpoint(self, link_id: str, saved: replication_pb2.LinkCheckpoint) -> None:
        await self._producer.send_and_wait(
            self._offsets, saved.SerializeToString(), key=link_id.encode()
        )
