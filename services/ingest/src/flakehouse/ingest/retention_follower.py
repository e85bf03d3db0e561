"""Keeps each dataset topic's retention.ms in line with the dataset's retention limit as the
quota service publishes it (DESIGN.md §7), so Kafka does not keep what no query answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka.errors import KafkaError

from flakehouse.core.catalog import CatalogReader
from flakehouse.core.kafka import KafkaAdmin, TopicConfigRefused
from flakehouse.ingest.retention import retention_changes, retention_configs
from flakehouse.quota.v1 import quota_pb2

log = logging.getLogger(__name__)

RETRY_S = 10.0


class RetentionFollower:
    def __init__(self, admin: KafkaAdmin, catalog: CatalogReader, timeout_s: float) -> None:
        self._admin = admin
        self._catalog = catalog
        self._timeout_s = timeout_s
        # topic -> the retention (seconds) it was created with or last given.
        self.applied: dict[str, int] = {}
        self._limits: Mapping[str, quota_pb2.DatasetLimits] = {}
        self._wake = asyncio.Event()
        self._refusal_logged = False

    def created(self, topic: str, retention_seconds: int) -> None:
        self.applied[topic] = retention_seconds

    def forget(self, topic: str) -> None:
        self.applied.pop(topic, None)

    def on_limits(self, datasets: Mapping[str, quota_pb2.DatasetLimits]) -> None:
        """LimitsWatch's callback: every dataset's limits, after each change."""
        self._limits = datasets
        self._wake.set()

    async def apply(self) -> bool:
        """One pass over the live datasets; False when Kafka could not be reached for some
        topic, which is then tried again."""
        async with asyncio.timeout(self._timeout_s):
            catalog = await self._catalog.sync()
        live = catalog.live_records()
        reachable = True
        for topic, seconds in retention_changes(live, self._limits, self.applied).items():
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._admin.alter_topic_config(topic, retention_configs(seconds))
            except TopicConfigRefused as exc:
                # Asking again would be refused again: count it as done until the next change.
                self._log_refusal(exc)
            except (KafkaError, TimeoutError) as exc:
                log.warning(
                    "could not set a topic's retention; trying again",
                    extra={"topic": topic, "error": type(exc).__name__},
                )
                reachable = False
                continue
            else:
                log.info("topic retention set", extra={"topic": topic, "retention_s": seconds})
            self.applied[topic] = seconds
        topics = {record.topic for record in live}
        self.applied = {t: s for t, s in self.applied.items() if t in topics}
        return reachable

    def _log_refusal(self, exc: TopicConfigRefused) -> None:
        # tansu refuses every AlterConfigs: once per process says it without flooding the log.
        if not self._refusal_logged:
            self._refusal_logged = True
            log.warning(
                "the broker refuses to change topic configs: Kafka keeps dataset topics by its "
                "own retention; queries and storage still apply each dataset's retention",
                extra={"error": str(exc)},
            )

    async def run_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                done = await self.apply()
            except (KafkaError, TimeoutError) as exc:
                log.warning("could not read the dataset catalog", extra={"error": repr(exc)})
                done = False
            if not done:
                await asyncio.sleep(RETRY_S)
                self._wake.set()
