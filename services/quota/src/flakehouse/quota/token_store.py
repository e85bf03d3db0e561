"""The `<prefix>.__tokens` topic, written by quota's TokenService (every service reads it with
flakehouse.core.token_follower): a record per token, keyed by its name; a tombstone revokes."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from flakehouse.auth.v1 import tokens_pb2
from flakehouse.core.errors import Unavailable
from flakehouse.core.kafka import tokens_topic


class TokenStore:
    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self._producer = producer
        self.topic = tokens_topic(prefix)

    async def write(self, name: str, record: tokens_pb2.TokenRecord | None) -> None:
        """Returns once Kafka has the record; Unavailable (nothing changed) when it cannot."""
        value = record.SerializeToString() if record is not None else None
        try:
            await self._producer.send_and_wait(self.topic, value, key=name.encode())
        except KafkaError as exc:
            raise Unavailable(f"the token {name!r} could not be stored: {exc}") from exc
