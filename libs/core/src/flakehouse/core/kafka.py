"""Kafka conventions and helpers shared by the services. Written to be correct on Apache Kafka
and on tansu alike: no idempotent producer, no reliance on broker retention or group state, and
end offsets checked by us (see DESIGN.md §3)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, UnknownTopicOrPartitionError
from aiokafka.errors import for_code as kafka_error_for_code
from aiokafka.helpers import create_ssl_context

from flakehouse.core.settings import (
    SASL_PROTOCOLS,
    TLS_PROTOCOLS,
    KafkaSaslMechanism,
    KafkaSecurityProtocol,
    KafkaSettings,
    env_name,
)

log = logging.getLogger(__name__)

INTERNAL_MARK = "__"
MAX_RECORD_BYTES = 1024 * 1024


class TopicConfigRefused(Exception):
    """The broker answered an AlterConfigs with a refusal (or does not implement it, as tansu
    does not): asking again will not help."""


def placement_topic(prefix: str) -> str:
    return f"{prefix}.{INTERNAL_MARK}placement"


def quotas_topic(prefix: str) -> str:
    return f"{prefix}.{INTERNAL_MARK}quotas"


def tokens_topic(prefix: str) -> str:
    return f"{prefix}.{INTERNAL_MARK}tokens"


@dataclass(frozen=True)
class KafkaConnection:
    """Where Kafka is and how to reach it, as aiokafka's client arguments: built once per process
    from the settings (the password read, the TLS context made) and given to every client."""

    bootstrap: str
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: KafkaSaslMechanism | None = None
    sasl_plain_username: str | None = None
    # Kept out of repr (and so of str, logs and error messages).
    sasl_plain_password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> KafkaConnection:
        """Reads the SASL password from its file and loads the TLS files. The settings validator
        has refused incomplete combinations; an unusable password file raises ValueError naming
        the variable, never showing what the file holds."""
        protocol = settings.kafka_security_protocol
        password = None
        if protocol in SASL_PROTOCOLS and settings.kafka_sasl_password_file is not None:
            password = read_password(
                settings.kafka_sasl_password_file,
                env_name(settings, "kafka_sasl_password_file"),
            )
        context = None
        if protocol in TLS_PROTOCOLS:
            # Without a CA file, the system's trusted roots: a managed Kafka's certificate is
            # usually signed by a public CA. aiokafka's context always checks host names.
            context = create_ssl_context(
                cafile=settings.kafka_ca_file,
                certfile=settings.kafka_cert_file,
                keyfile=settings.kafka_key_file,
            )
        return cls(
            bootstrap=settings.kafka_bootstrap,
            security_protocol=protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username or None,
            sasl_plain_password=password,
            ssl_context=context,
        )

    def client_kwargs(self) -> dict[str, Any]:
        """The arguments every aiokafka client (producer, consumer, admin) takes alike."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "ssl_context": self.ssl_context,
        }
        if self.security_protocol in SASL_PROTOCOLS:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_plain_username
            kwargs["sasl_plain_password"] = self.sasl_plain_password
        return kwargs


def read_password(path: Path, variable: str) -> str:
    """The one line of a password file, without its line ending (a Secret's key may have one,
    or not). Errors name the variable and the file, never what the file holds."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path} ({exc.strerror})") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password or "\n" in password or "\r" in password:
        raise ValueError(f"{variable}: {path} must hold the password on one line")
    return password


def make_producer(
    kafka: KafkaConnection, client_id: str, timeout_s: float = 15.0
) -> AIOKafkaProducer:
    # acks=all: an upload is answered only once its events are durable. No idempotence: tansu
    # does not support it, and storage dedupes by event id anyway.
    return AIOKafkaProducer(
        **kafka.client_kwargs(),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        compression_type="lz4",
        max_request_size=MAX_RECORD_BYTES + 64 * 1024,
        linger_ms=2,
        # Also bounds the flush at stop() when Kafka is gone.
        request_timeout_ms=int(timeout_s * 1000),
    )


def make_consumer(
    kafka: KafkaConnection, client_id: str, fetch_wait_ms: int = 500
) -> AIOKafkaConsumer:
    """A consumer driven by assign() and seek(); no group, no committed offsets. The broker
    holds a fetch up to `fetch_wait_ms` when it has nothing new."""
    return AIOKafkaConsumer(
        **kafka.client_kwargs(),
        fetch_max_wait_ms=fetch_wait_ms,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * MAX_RECORD_BYTES,
        fetch_max_bytes=16 * MAX_RECORD_BYTES,
    )


class KafkaAdmin:
    """Topic management with existence checked by us: tansu answers a duplicate CreateTopics
    with success, so `created` comes from a metadata lookup before the call."""

    def __init__(
        self,
        kafka: KafkaConnection,
        client_id: str,
        *,
        replication_factor: int = 1,
        min_insync_replicas: int = 1,
    ) -> None:
        self._admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id=client_id)
        self._replication_factor = replication_factor
        self._min_insync_replicas = min_insync_replicas

    @classmethod
    def for_settings(
        cls, settings: KafkaSettings, kafka: KafkaConnection, client_id: str
    ) -> KafkaAdmin:
        """An admin that creates topics with the durability the settings ask for."""
        return cls(
            kafka,
            client_id,
            replication_factor=settings.topic_replication_factor,
            min_insync_replicas=settings.topic_min_insync_replicas,
        )

    async def start(self) -> None:
        await self._admin.start()

    async def close(self) -> None:
        await self._admin.close()

    async def topic_names(self) -> list[str]:
        """The names of every topic of the broker (one metadata request, no descriptions)."""
        return list(await self._admin.list_topics())

    async def partition_counts(self, topics: Iterable[str] | None = None) -> dict[str, int]:
        """Partition count of each existing topic (of those named, or of all)."""
        names = list(topics) if topics is not None else await self.topic_names()
        if not names:
            return {}
        existing = set(await self.topic_names())
        names = [name for name in names if name in existing]
        if not names:
            return {}
        described = await self._admin.describe_topics(names)
        return {
            entry["topic"]: len(entry["partitions"])
            for entry in described
            if entry.get("error_code", 0) == 0 and entry["partitions"]
        }

    def _configs(self, compact: bool, extra: Mapping[str, str] | None) -> dict[str, str]:
        """A topic's whole config: the durability the settings ask for, then `extra`."""
        configs = {"cleanup.policy": "compact"} if compact else {}
        if self._min_insync_replicas > 1:
            configs["min.insync.replicas"] = str(self._min_insync_replicas)
        configs.update(extra or {})
        return configs

    async def create_topic(
        self,
        name: str,
        partitions: int,
        *,
        compact: bool = False,
        configs: Mapping[str, str] | None = None,
    ) -> bool:
        """Creates a topic with extra `configs` (e.g. retention.ms); False if it already existed
        (whatever its partition count and configs)."""
        if name in await self.partition_counts([name]):
            return False
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=self._replication_factor,
            topic_configs=self._configs(compact, configs),
        )
        await self._admin.create_topics([topic])
        # Metadata can lag creation; wait until the topic is visible so producers find it.
        deadline = time.monotonic() + 10
        while name not in await self.partition_counts([name]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} not visible after creation")
            await asyncio.sleep(0.05)
        return True

    async def alter_topic_config(
        self, name: str, configs: Mapping[str, str], *, compact: bool = False
    ) -> None:
        """Sets a topic's configs with AlterConfigs. That request replaces the topic's whole
        config (a key left out goes back to the broker default), so the durability configs of
        create_topic are sent along. Raises TopicConfigRefused when the broker refuses or lacks
        the request, KafkaError or TimeoutError when it cannot be reached."""
        resource = ConfigResource(ConfigResourceType.TOPIC, name, self._configs(compact, configs))
        try:
            responses = await self._admin.alter_configs([resource])
        except IncompatibleBrokerVersion as exc:
            raise TopicConfigRefused(f"the broker does not implement AlterConfigs ({exc})") from exc
        for response in responses:
            for error_code, message, _, resource_name in response.resources:
                if error_code:
                    error = kafka_error_for_code(error_code)
                    raise TopicConfigRefused(
                        f"AlterConfigs of {resource_name} refused: {error.__name__} {message or ''}"
                    )

    async def delete_topic(self, name: str) -> bool:
        """Deletes a topic; False if there was none of that name."""
        response = await self._admin.delete_topics([name])
        for _, error_code in response.topic_error_codes:
            if error_code == UnknownTopicOrPartitionError.errno:
                return False
            if error_code:
                raise kafka_error_for_code(error_code)(f"DeleteTopics of {name}")
        return True


STATE_FETCH_WAIT_MS = 20


async def read_state_topic(
    settings: KafkaSettings, kafka: KafkaConnection, client_id: str, topic: str
) -> list[tuple[bytes | None, bytes | None]]:
    """Creates the single-partition compacted state topic if needed and returns its records
    in order (the last value of a key wins): how quota and replication rebuild at start."""
    admin = KafkaAdmin.for_settings(settings, kafka, client_id)
    await admin.start()
    try:
        await admin.create_topic(topic, 1, compact=True)
    finally:
        await admin.close()
    # read_to_end learns the end from a fetch response: an empty topic's would wait out the
    # broker's whole fetch wait.
    consumer = make_consumer(kafka, client_id, fetch_wait_ms=STATE_FETCH_WAIT_MS)
    await consumer.start()
    try:
        return await read_to_end(consumer, topic, 1)
    finally:
        await consumer.stop()


async def read_to_end(
    consumer: AIOKafkaConsumer, topic: str, partitions: int
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic from its start to its end; for compacted state topics,
    where the last value of each key wins. The consumer must be started (and fresh: no fetch in
    flight) and is left assigned to the topic's partitions.

    The end is the high watermark of fetch responses, which every broker reports exactly: tansu
    answers ListOffsets(latest) with one past the base offset of some recent batch (its s3 engine
    picks it by object modification time, to the second), short of the end."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    records: list[tuple[bytes | None, bytes | None]] = []
    remaining = set(tps)
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=500)
        for messages in batch.values():
            records.extend((m.key, m.value) for m in messages)
        for tp in list(remaining):
            end = consumer.highwater(tp)
            if end is not None and await consumer.position(tp) >= end:
                remaining.discard(tp)
    return records
