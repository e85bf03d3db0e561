"""The `<prefix>.__tokens` topic, written by quota's TokenService (every service reads it with
flakehouse.core.token_follower): a record per token, keyed by its name (a tombstone revokes),
and its last use under `<name>#used`."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from flakehouse.core.errors import Unavailable
from flakehouse.core.kafka import tokens_topic


class TokenStore:
    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self._producer = producer
        self.topic = tokens_topic(prefix)

    async def write(self, key: str, value: bytes | None) -> None:
        """Returns once Kafka has the record (None: a tombstone); Unavailable (nothing changed)
        when it cannot."""
        try:
            await self._producer.send_and_wait(self.topic, value, key=key.encode())
        except KafkaError as exc:
            name = key.split("#")[0]
            raise Unavailable(f"the token {name!r} could not be stored: {exc}") from exc
