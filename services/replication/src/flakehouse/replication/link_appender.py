"""Appends what a link pulled to this cluster's topic of the dataset: each record as the source
stored it (its event ids kept), keyed by its upload id, so it lands in the partition a local
upload of the same id would (whichever path brought it: copies meet in one partition, where
storage drops them), with the `origin` header of the cluster it was ingested in and the `via`
header of the clusters it passed through since, this one last, so that it is never sent back
to any of them. Returns once Kafka acknowledged every record (acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from flakehouse.core.cluster_identity import ORIGIN_HEADER, VIA_HEADER
from flakehouse.core.errors import Unavailable
from flakehouse.replication.link_source import SourceRecord

KAFKA_RETRY_MS = 1000


class Appender:
    def __init__(self, producer: Any, timeout_s: float, local_cluster: str) -> None:
        self._producer = producer  # an AIOKafkaProducer, acks=all
        self._timeout_s = timeout_s
        self._local_cluster = local_cluster

    async def append(self, topic: str, records: Sequence[SourceRecord]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                pending = [
                    await self._producer.send(
                        topic,
                        record.batch,
                        key=record.upload_id.encode(),
                        headers=[
                            (ORIGIN_HEADER, record.origin.encode()),
                            (VIA_HEADER, ",".join((*record.via, self._local_cluster)).encode()),
                        ],
                    )
                    for record in records
                ]
                await asyncio.gather(*pending)
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(
                f"this cluster's Kafka did not acknowledge the pulled records "
                f"({type(exc).__name__}); they are pulled again from the checkpoint",
                retry_after_ms=KAFKA_RETRY_MS,
            ) from None
