"""Quota across process boundaries: limits persisted in the compacted topic survive a restart of
the quota service, and ingest answers RESOURCE_EXHAUSTED with a retry delay past the rate."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from flakehouse.client.client import Client, UploadResult
from flakehouse.core.broker import EmbeddedBroker
from flakehouse.core.errors import ResourceExhausted
from flakehouse.ingest.app import IngestApp
from flakehouse.ingest.settings import IngestSettings
from flakehouse.quota.app import QuotaApp
from flakehouse.quota.settings import QuotaSettings
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc

pytestmark = pytest.mark.broker

REPORT = b"""<testsuite name="s">
<testcase classname="c" name="a"/><testcase classname="c" name="b"/>
<testcase classname="c" name="c"><failure message="x"/></testcase></testsuite>"""


async def start_quota(broker: EmbeddedBroker, prefix: str) -> QuotaApp:
    app = QuotaApp(QuotaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix))
    await app.start()
    return app


async def test_limit_survives_restart_and_ingest_is_refused_past_it(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    quota = await start_quota(broker, topic_prefix)
    async with grpc.aio.insecure_channel(quota.server.address) as channel:
        stub = quota_pb2_grpc.QuotaServiceStub(channel)
        limit = quota_pb2.Quota(dataset="ci", events_per_second=1.0)
        await stub.SetQuota(quota_pb2.SetQuotaRequest(quota=limit))
    await quota.stop()

    quota = await start_quota(broker, topic_prefix)  # a new process would do the same
    ingest = IngestApp(
        IngestSettings(
            kafka_bootstrap=broker.bootstrap,
            topic_prefix=topic_prefix,
            quota_address=quota.server.address,
        )
    )
    await ingest.start()
    try:
        async with grpc.aio.insecure_channel(quota.server.address) as channel:
            stub = quota_pb2_grpc.QuotaServiceStub(channel)
            got = await stub.GetQuota(quota_pb2.GetQuotaRequest(dataset="ci"))
            assert got.quota.events_per_second == 1.0

        client = Client(ingest=ingest.server.address, retries=0)
        first = await _upload(client, REPORT)
        assert first.events == 3 and first.by_status == {"passed": 2, "failed": 1}
        # 3 events against a bucket of 2 (1/s, 2 s burst): the bucket is now in debt.
        with pytest.raises(ResourceExhausted) as refused:
            await _upload(client, REPORT.replace(b'name="a"', b'name="a2"'))
        assert refused.value.retry_after_ms is not None and refused.value.retry_after_ms > 0
        assert "over its ingest rate" in refused.value.message
        client.close()
    finally:
        await ingest.stop()
        await quota.stop()


async def _upload(client: Client, data: bytes) -> UploadResult:
    return await asyncio.to_thread(client.upload, data, dataset="ci", filename="r.xml")
