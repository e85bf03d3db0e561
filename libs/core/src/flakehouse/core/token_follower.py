"""Every service's copy of the tokens: it reads `<prefix>.__tokens` to its end before the
service serves, then follows it, so a token created anywhere works everywhere and a revoked one
stops within a fetch (FOLLOW_WAIT_MS). Checking a call is then a lookup in memory."""

from __future__ import annotations

import logging

from aiokafka import TopicPartition
from google.protobuf.message import DecodeError

from flakehouse.auth.v1 import tokens_pb2
from flakehouse.core.kafka import (
    KafkaAdmin,
    KafkaConnection,
    make_consumer,
    read_to_end,
    tokens_topic,
)
from flakehouse.core.settings import KafkaSettings
from flakehouse.core.tokens import USE_SUFFIX, TokenTable

log = logging.getLogger(__name__)
FOLLOW_WAIT_MS = 250


class TokenFollower:
    def __init__(
        self, settings: KafkaSettings, kafka: KafkaConnection, client_id: str, table: TokenTable
    ) -> None:
        self._settings = settings
        self._kafka = kafka
        self._client_id = client_id
        self.table = table
        self.topic = tokens_topic(settings.topic_prefix)
        self._tp = TopicPartition(self.topic, 0)
        self._consumer = make_consumer(kafka, client_id, fetch_wait_ms=FOLLOW_WAIT_MS)

    async def start(self) -> None:
        """Creates the topic if needed and applies all of it."""
        admin = KafkaAdmin.for_settings(self._settings, self._kafka, self._client_id)
        await admin.start()
        try:
            await admin.create_topic(self.topic, 1, compact=True)
        finally:
            await admin.close()
        await self._consumer.start()
        for key, value in await read_to_end(self._consumer, self.topic, 1):
            self._apply(key, value)

    async def follow_forever(self) -> None:
        while True:
            batch = await self._consumer.getmany(self._tp, timeout_ms=FOLLOW_WAIT_MS * 4)
            for message in batch.get(self._tp, []):
                self._apply(message.key, message.value)

    async def stop(self) -> None:
        await self._consumer.stop()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode(errors="replace")
        try:
            if name.endswith(USE_SUFFIX):
                used = tokens_pb2.TokenUse.FromString(value) if value is not None else None
                self.table.note_use(name[: -len(USE_SUFFIX)], used and used.last_used_us)
            elif value is None:
                self.table.apply(name, None)
            elif (record := tokens_pb2.TokenRecord.FromString(value)).info.name == name:
                self.table.apply(name, record)
        except DecodeError:
            log.warning("unreadable token record skipped", extra={"token": name[:80]})
