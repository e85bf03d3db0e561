"""Quota across process boundaries: limits persisted in the compacted topic survive a restart of
the quota service, ingest answers RESOURCE_EXHAUSTED with a retry delay past the rate, and a
rate holds across several ingest processes."""

from __future__ import annotations

import asyncio

import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.client.client import Client, UploadResult
from flakehouse.core.errors import ResourceExhausted
from flakehouse.ingest.app import IngestApp
from flakehouse.ingest.settings import IngestSettings
from flakehouse.quota.app import QuotaApp
from flakehouse.quota.settings import QuotaSettings

pytestmark = [pytest.mark.processes, pytest.mark.broker]

REPORT = b"""<testsuite name="s">
<testcase classname="c" name="a"/><testcase classname="c" name="b"/>
<testcase classname="c" name="c"><failure message="x"/></testcase></testsuite>"""


async def start_quota(broker: EmbeddedBroker, prefix: str) -> QuotaApp:
    app = QuotaApp(QuotaSettings(kafka_bootstrap=broker.bootstrap, topic_prefix=prefix))
    await app.start()
    return app


async def start_ingest(broker: EmbeddedBroker, prefix: str, quota: QuotaApp) -> IngestApp:
    ingest = IngestApp(
        IngestSettings(
            kafka_bootstrap=broker.bootstrap,
            topic_prefix=prefix,
            quota_address=quota.server.address,
        )
    )
    await ingest.start()
    return ingest


async def test_limit_survives_restart_and_ingest_is_refused_past_it(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    quota = await start_quota(broker, topic_prefix)
    ingest = await start_ingest(broker, topic_prefix, quota)
    client = Client(ingest=ingest.server.address, quota=quota.server.address, retries=0)
    try:
        await asyncio.to_thread(client.create_dataset, "ci", events_per_second=1.0)
        await quota.stop()
        quota = await start_quota(broker, topic_prefix)  # a new process would do the same
        await ingest.stop()
        ingest = await start_ingest(broker, topic_prefix, quota)
        client.close()
        client = Client(ingest=ingest.server.address, quota=quota.server.address, retries=0)
        got = await asyncio.to_thread(client.get_quota, "ci")
        assert got.events_per_second == 1.0

        first = await _upload(client, REPORT)
        assert first.events == 3 and first.by_status == {"passed": 2, "failed": 1}
        # 3 events against a bucket of 2 (1/s, 2 s burst): the bucket is now in debt.
        with pytest.raises(ResourceExhausted) as refused:
            await _upload(client, REPORT.replace(b'name="a"', b'name="a2"'))
        assert refused.value.retry_after_ms is not None and refused.value.retry_after_ms > 0
        assert "over its ingest rate" in refused.value.message
    finally:
        client.close()
        await ingest.stop()
        await quota.stop()


async def test_bytes_per_second_holds_across_ingest_processes(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    """Two ingest processes share one dataset's bytes/s: what one took, the other cannot."""
    quota = await start_quota(broker, topic_prefix)
    first = await start_ingest(broker, topic_prefix, quota)
    second = await start_ingest(broker, topic_prefix, quota)
    one = Client(ingest=first.server.address, quota=quota.server.address, retries=0)
    two = Client(ingest=second.server.address, quota=quota.server.address, retries=0)
    try:
        # A bucket of 2 s x 50 B/s = 100 bytes; each report is about 170: the first puts the
        # bucket in debt, and no lease is granted until it is paid back.
        await asyncio.to_thread(one.create_dataset, "ci", bytes_per_second=50.0)
        await _upload(one, REPORT)
        with pytest.raises(ResourceExhausted) as refused:
            await _upload(two, REPORT.replace(b'name="a"', b'name="a2"'))
        assert refused.value.retry_after_ms is not None and refused.value.retry_after_ms > 0
        # Once the debt is paid back, the other process may upload again.
        await asyncio.sleep(refused.value.retry_after_ms / 1000)
        again = await _upload(two, REPORT.replace(b'name="a"', b'name="a3"'))
        assert again.events == 3
    finally:
        one.close()
        two.close()
        await first.stop()
        await second.stop()
        await quota.stop()


async def _upload(client: Client, data: bytes) -> UploadResult:
    return await asyncio.to_thread(client.upload, data, dataset="ci", filename="r.xml")
