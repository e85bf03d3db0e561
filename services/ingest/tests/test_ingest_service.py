"""The ingest service in-process against the real broker: what lands in Kafka, what a bad file
writes (nothing), idempotent upload ids, admission control, and a Kafka that is gone."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.client.client import Client
from flakehouse.common.v1 import events_pb2
from flakehouse.core.errors import InvalidArgument, ResourceExhausted, Unavailable
from flakehouse.core.kafka import KafkaConnection, make_consumer, read_to_end
from flakehouse.events.batch import decode_batch
from flakehouse.events.junit import parse_junit_all
from flakehouse.ingest.app import IngestApp
from flakehouse.ingest.settings import IngestSettings
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from tests import credentials

pytestmark = [pytest.mark.processes, pytest.mark.broker]

# The shared JUnit corpus, vendored under tests/corpus at the repository root.
CORPUS = Path(__file__).resolve().parents[3] / "tests" / "corpus"
REPORT = CORPUS / "enricomi" / "testsuite-in-testsuite.xml"
CORRUPT = CORPUS / "enricomi" / "pytest" / "corrupt-xml.xml"


async def start_ingest(bootstrap: str, prefix: str, **overrides: object) -> IngestApp:
    settings = IngestSettings(
        kafka_bootstrap=bootstrap, topic_prefix=prefix, default_partitions=2, **overrides
    )
    app = IngestApp(settings)
    await app.start()
    return app


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list[events_pb2.EventBatch]:
    consumer = make_consumer(KafkaConnection(bootstrap), "test")
    await consumer.start()
    try:
        records = await read_to_end(consumer, topic, partitions)
    finally:
        await consumer.stop()
    return [events_pb2.EventBatch.FromString(value or b"") for _, value in records]


def upload(client: Client, source: Path | bytes, **kwargs: object):  # type: ignore[no-untyped-def]
    return asyncio.to_thread(client.upload, source, dataset="ci", **kwargs)


@pytest.fixture
async def ingest(broker: EmbeddedBroker, topic_prefix: str) -> AsyncIterator[IngestApp]:
    # One worker process: the production path (parsing outside the service process).
    app = await start_ingest(broker.bootstrap, topic_prefix, parse_workers=1)
    yield app
    await app.stop()


async def test_upload_lands_in_kafka_as_the_parsed_events(
    ingest: IngestApp, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    client = Client(ingest=ingest.server.address, retries=0)
    before_us = time.time_ns() // 1000
    result = await upload(client, REPORT, labels={"branch": "main"}, filename="nested.xml")
    after_us = time.time_ns() // 1000
    expected = parse_junit_all(
        io.BytesIO(REPORT.read_bytes()), filename="x", upload_time_us=0, labels={"branch": "main"}
    )
    assert result.events == len(expected) > 0
    assert result.dataset_created and result.format == "junit"
    assert len(result.offsets) == 1  # one upload, one partition (keyed by upload id)

    batches = await read_topic(broker.bootstrap, f"{topic_prefix}.ci", 2)
    got = [event for batch in batches for event in decode_batch(batch)]
    # The file has no timestamps: its events take the time of the upload.
    assert all(before_us <= event.pop("timestamp") <= after_us for event in got)
    assert got == [{k: v for k, v in e.items() if k != "timestamp"} for e in expected]
    assert {b.upload_id for b in batches} == {result.upload_id}

    again = await upload(client, REPORT, labels={"branch": "main"}, filename="nested.xml")
    assert again.upload_id == result.upload_id, "a resent upload must keep its id"
    other = await upload(client, REPORT, labels={"branch": "dev"}, filename="nested.xml")
    assert other.upload_id != result.upload_id
    client.close()


async def test_bad_file_is_refused_whole_and_writes_nothing(
    ingest: IngestApp, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    client = Client(ingest=ingest.server.address, retries=0)
    with pytest.raises(InvalidArgument) as refused:
        await upload(client, CORRUPT, filename="corrupt-xml.xml")
    assert refused.value.message.startswith("corrupt-xml.xml:11: ")
    # The dataset is created only after a successful parse, so nothing exists at all.
    datasets = await asyncio.to_thread(client.list_datasets)
    assert datasets == []
    with pytest.raises(InvalidArgument, match=r"^empty\.xml: the file is empty$"):
        await upload(client, b"", filename="empty.xml")
    client.close()


async def test_busy_ingest_answers_resource_exhausted_with_a_delay(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    app = await start_ingest(
        broker.bootstrap,
        topic_prefix,
        max_concurrent_uploads=1,
        admission_wait_s=0.2,
        parse_workers=0,
    )
    release = asyncio.Event()

    async def held_upload() -> AsyncIterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(dataset="ci"))
        await release.wait()
        data = REPORT.read_bytes()
        yield ingest_pb2.UploadRequest(chunk=data)
        yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size=len(data)))

    try:
        async with credentials.aio_channel(app.server.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            first = asyncio.ensure_future(result_of(stub.Upload(held_upload())))
            await asyncio.sleep(0.2)
            client = Client(ingest=app.server.address, retries=0)
            with pytest.raises(ResourceExhausted) as busy:
                await upload(client, REPORT)
            assert busy.value.retry_after_ms and busy.value.retry_after_ms > 0
            release.set()
            assert (await first).events > 0
            assert (await upload(client, REPORT)).events > 0  # the slot is free again
            client.close()
    finally:
        await app.stop()


async def result_of(call: AsyncIterator[ingest_pb2.UploadResponse]) -> ingest_pb2.UploadResult:
    """The result at the end of an Upload stream's replies."""
    async for reply in call:
        if reply.HasField("result"):
            return reply.result
    raise AssertionError("the stream ended without a result")


async def test_kafka_gone_gives_unavailable_with_a_delay_not_a_hang(topic_prefix: str) -> None:
    own = EmbeddedBroker().start()
    app = await start_ingest(
        own.bootstrap, topic_prefix, produce_timeout_s=2, parse_workers=0, shutdown_grace_s=1
    )
    try:
        client = Client(ingest=app.server.address, retries=0, timeout_s=30)
        assert (await upload(client, REPORT)).events > 0
        own.stop()
        # Unavailable, not the client's DeadlineExceeded at 30 s: the service gave up on its own
        # (produce_timeout_s), which is all "not a hang" needs; how soon is not a test's business.
        with pytest.raises(Unavailable) as gone:
            await upload(client, REPORT.read_bytes() + b"<!-- another upload -->")
        assert gone.value.retry_after_ms and gone.value.retry_after_ms > 0
        client.close()
    finally:
        await app.stop()
        own.stop()


async def test_a_large_json_lines_upload_is_parsed_in_parts(
    broker: EmbeddedBroker, topic_prefix: str
) -> None:
    app = await start_ingest(
        broker.bootstrap, topic_prefix, parse_workers=2, parse_in_parts_bytes=4096
    )
    lines = [
        b'{"name": "t%d", "status": "%s"}\n' % (i, b"failed" if i % 4 else b"passed")
        for i in range(5000)
    ]
    ran: list[str] = []
    run = app.workers.run

    async def recorded(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        ran.append(fn.__name__)
        return await run(fn, *args, **kwargs)

    app.workers.run = recorded  # type: ignore[method-assign]
    try:
        client = Client(ingest=app.server.address, retries=0)
        result = await upload(client, b"".join(lines), filename="big.jsonl")
        assert ran == ["parse_part_to_records"] * 2
        assert result.events == 5000 and result.by_status == {"failed": 3750, "passed": 1250}
        batches = await read_topic(broker.bootstrap, f"{topic_prefix}.ci", 2)
        ids = [event_id for batch in batches for event_id in batch.event_ids]
        assert len(ids) == len(set(ids)) == 5000  # every part's positions, none twice
        names = [e["name"] for batch in batches for e in decode_batch(batch)]
        assert names == [f"t{i}" for i in range(5000)], "the parts' records in order"

        lines[4000] = b'{"name": \n'
        with pytest.raises(InvalidArgument, match=r"^big\.jsonl:4001: "):
            await upload(client, b"".join(lines), filename="big.jsonl")
        client.close()
    finally:
        await app.stop()
