"""The `<prefix>.__quotas` topic: every dataset's limits and floor (DatasetLimits, key: the
dataset name), a null value once they are deleted. Written before anything is answered or
published, and read back in full at start."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError

from flakehouse.core.errors import Unavailable
from flakehouse.core.kafka import KafkaConnection, quotas_topic, read_state_topic
from flakehouse.core.settings import KafkaSettings
from flakehouse.quota.v1 import quota_pb2

log = logging.getLogger(__name__)


def decode(key: bytes, value: bytes) -> quota_pb2.DatasetLimits | None:
    """A record's limits; a record written before floors existed holds a bare Quota. None when
    it is neither (it names another dataset or does not parse)."""
    dataset = key.decode(errors="replace")
    for parse in (quota_pb2.DatasetLimits.FromString, _legacy):
        try:
            limits = parse(value)
        except DecodeError:
            continue
        if limits.quota.dataset == dataset:
            return limits
    return None


def _legacy(value: bytes) -> quota_pb2.DatasetLimits:
    return quota_pb2.DatasetLimits(quota=quota_pb2.Quota.FromString(value))


class LimitsStore:
    def __init__(
        self, settings: KafkaSettings, kafka: KafkaConnection, producer: AIOKafkaProducer
    ) -> None:
        self._settings = settings
        self._kafka = kafka
        self._producer = producer
        self.topic = quotas_topic(settings.topic_prefix)

    async def load(self) -> dict[str, quota_pb2.DatasetLimits]:
        """The last limits of every dataset; a tombstone forgets them."""
        records = await read_state_topic(
            self._settings, self._kafka, "flakehouse-quota", self.topic
        )
        found: dict[str, quota_pb2.DatasetLimits] = {}
        for key, value in records:
            if key is None:
                continue
            if value is None:
                found.pop(key.decode(errors="replace"), None)
                continue
            limits = decode(key, value)
            if limits is None:
                log.warning("unreadable quota record skipped", extra={"key": repr(key)})
                continue
            found[limits.quota.dataset] = limits
        return found

    async def save(self, limits: quota_pb2.DatasetLimits) -> None:
        await self._write(limits.quota.dataset, limits.SerializeToString())

    async def delete(self, dataset: str) -> None:
        await self._write(dataset, None)

    async def _write(self, dataset: str, value: bytes | None) -> None:
        """Returns once Kafka has the record; Unavailable (nothing changed) when it cannot."""
        try:
            await self._producer.send_and_wait(self.topic, value, key=dataset.encode())
        except KafkaError as exc:
            raise Unavailable(f"the limits of {dataset!r} could not be stored: {exc}") from exc
