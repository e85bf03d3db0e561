"""A service's side of tokens: the table its interceptor checks calls against, kept current by
following the token topic, and the report of which tokens were used here (for `flakehouse
tokens list`), sent every REPORT_INTERVAL_S to whoever keeps the tokens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from flakehouse.auth.v1 import tokens_pb2, tokens_pb2_grpc
from flakehouse.core.kafka import KafkaConnection
from flakehouse.core.settings import KafkaSettings, ServiceSettings
from flakehouse.core.tasks import BackgroundTasks
from flakehouse.core.token_follower import TokenFollower
from flakehouse.core.tokens import TokenTable, read_secret

log = logging.getLogger(__name__)
REPORT_INTERVAL_S = 30.0

ReportUse = Callable[[dict[str, int]], Awaitable[None]]


def report_to(channel: grpc.aio.Channel) -> ReportUse:
    """Reports over a channel to the service that keeps the tokens (quota)."""
    stub = tokens_pb2_grpc.TokenServiceStub(channel)

    async def report(used: dict[str, int]) -> None:
        request = tokens_pb2.ReportTokenUseRequest(last_used_us=used)
        await stub.ReportTokenUse(request, timeout=REPORT_INTERVAL_S / 3)

    return report


class ServiceAuth:
    def __init__(
        self,
        settings: ServiceSettings,
        kafka_settings: KafkaSettings,
        kafka: KafkaConnection,
        client_id: str,
    ) -> None:
        """`kafka_settings`: the same settings object, seen as the Kafka settings it also is."""
        admin = settings.admin_token_file
        self.table = TokenTable(
            read_secret(settings.service_token_file), read_secret(admin) if admin else None
        )
        self._follower = TokenFollower(kafka_settings, kafka, client_id, self.table)

    async def start(self, tasks: BackgroundTasks, report: ReportUse | None = None) -> None:
        """Reads every token before the service serves; then follows, and reports use."""
        await self._follower.start()
        tasks.spawn("tokens", self._follower.follow_forever())
        if report is not None:
            tasks.spawn("token-use", self._report_forever(report))

    async def stop(self) -> None:
        await self._follower.stop()

    async def _report_forever(self, report: ReportUse) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            used = self.table.used_since_report()
            if not used:
                continue
            try:
                await report(used)
            except Exception as exc:  # a lost report only makes "last used" older
                log.warning("token use not reported", extra={"error": str(exc)})
