"""The changes stream against the real broker: every record of the partitions asked, in order,
from the offsets given, with its origin (this cluster for what it ingested, the header's for a
record that came from elsewhere), its event ids kept, and a record of the reader's own cluster
sent without its batch; it follows records written after it started, and says when the reader
has caught up."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.client.client import Client, UploadResult
from flakehouse.common.v1 import events_pb2
from flakehouse.core.cluster_identity import ORIGIN_HEADER, VIA_HEADER
from flakehouse.core.kafka import KafkaConnection, make_producer
from flakehouse.ingest import api as ingest_api
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.tests.conftest import StartIngest
from tests import credentials

pytestmark = [pytest.mark.processes, pytest.mark.broker]

REPORT = b'<testsuite name="s"><testcase classname="c" name="a"/><testcase name="b"/></testsuite>'


async def take(
    stream: grpc.aio.UnaryStreamCall, n: int, timeout_s: float = 20
) -> list[ingest_pb2.ReadChangesResponse]:
    """The next n records of the stream, caught-up markers left out."""
    got: list[ingest_pb2.ReadChangesResponse] = []
    async with asyncio.timeout(timeout_s):
        async for change in stream:
            if change.caught_up:
                continue
            got.append(change)
            if len(got) == n:
                break
    return got


async def test_the_stream_says_origins_keeps_ids_and_follows(
    start_ingest: StartIngest, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    app = await start_ingest(default_partitions=1)
    here = app.api.cluster_id
    client = Client(ingest=app.server.address, retries=0)
    first = await asyncio.to_thread(client.upload_files, [("r.xml", REPORT)], dataset="ci")
    assert isinstance(first[0], UploadResult)
    # A record a link appended here: ingested in fhc-away, it came through fhc-mid.
    producer = make_producer(KafkaConnection(broker.bootstrap), "test")
    await producer.start()
    foreign = events_pb2.EventBatch(upload_id="u-away", row_count=0).SerializeToString()
    headers = [(ORIGIN_HEADER, b"fhc-away"), (VIA_HEADER, f"fhc-mid,{here}".encode())]
    await producer.send_and_wait(f"{topic_prefix}.ci", foreign, key=b"u-away", headers=headers)
    await producer.stop()

    stub = ingest_pb2_grpc.IngestServiceStub(credentials.aio_channel(app.server.address))
    request = ingest_pb2.ReadChangesRequest(dataset="ci", from_offsets={0: 0})
    stream = stub.ReadChanges(request)
    local, away = await take(stream, 2)
    assert (local.offset, local.origin, away.offset, away.origin) == (0, here, 1, "fhc-away")
    assert (list(local.via), list(away.via)) == ([], ["fhc-mid", here])
    batch = events_pb2.EventBatch.FromString(local.batch)
    assert batch.upload_id == first[0].upload_id == local.upload_id
    assert batch.row_count == 2 and len(batch.event_ids) == 2
    assert local.end_offset == 2
    # Written after the stream began: it follows.
    await asyncio.to_thread(client.upload_files, [("s.xml", REPORT + b" ")], dataset="ci")
    (later,) = await take(stream, 1)
    assert (later.offset, later.origin) == (2, here)
    stream.cancel()

    # A record comes without its batch to a reader it originates in or passed through, so that
    # it never goes back to a cluster that held it; its offset still comes, so the reader's
    # checkpoint moves past it. From an offset: that offset on.
    for reader in ("fhc-away", "fhc-mid"):
        excluding = ingest_pb2.ReadChangesRequest(
            dataset="ci", from_offsets={0: 1}, reader_cluster=reader
        )
        stream = stub.ReadChanges(excluding)
        skipped, kept = await take(stream, 2)
        assert (skipped.offset, skipped.origin, skipped.batch) == (1, "fhc-away", b"")
        assert (kept.offset, kept.origin) == (2, here) and kept.batch
        stream.cancel()
    client.close()


async def test_a_partition_the_dataset_lacks_is_refused(start_ingest: StartIngest) -> None:
    app = await start_ingest(default_partitions=2)
    client = Client(ingest=app.server.address, retries=0)
    await asyncio.to_thread(client.upload_files, [("r.xml", REPORT)], dataset="ci")
    stub = ingest_pb2_grpc.IngestServiceStub(credentials.aio_channel(app.server.address))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await take(
            stub.ReadChanges(ingest_pb2.ReadChangesRequest(dataset="ci", from_offsets={5: 0})), 1
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has 2 partitions, not [5]" in (error.value.details() or "")
    client.close()


async def test_a_reader_learns_it_is_caught_up_even_on_an_empty_topic(
    start_ingest: StartIngest,
) -> None:
    app = await start_ingest(default_partitions=2)
    client = Client(ingest=app.server.address, retries=0)
    await asyncio.to_thread(client.create_dataset, "empty")
    stub = ingest_pb2_grpc.IngestServiceStub(credentials.aio_channel(app.server.address))
    stream = stub.ReadChanges(
        ingest_pb2.ReadChangesRequest(dataset="empty", from_offsets={0: 0, 1: 0})
    )
    async with asyncio.timeout(20):
        first = await stream.read()
    assert first == ingest_pb2.ReadChangesResponse(caught_up=True)
    stream.cancel()
    client.close()


async def test_change_streams_beyond_the_cap_are_told_to_retry(start_ingest: StartIngest) -> None:
    app = await start_ingest(default_partitions=1, max_change_streams=1)
    client = Client(ingest=app.server.address, retries=0)
    await asyncio.to_thread(client.upload_files, [("r.xml", REPORT)], dataset="ci")
    stub = ingest_pb2_grpc.IngestServiceStub(credentials.aio_channel(app.server.address))
    request = ingest_pb2.ReadChangesRequest(dataset="ci", from_offsets={0: 0})
    held = stub.ReadChanges(request)
    await take(held, 1)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await take(stub.ReadChanges(request), 1)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "serves 1 change streams already" in (error.value.details() or "")
    held.cancel()
    # The slot comes back once the stream ends.
    async with asyncio.timeout(20):
        while True:
            try:
                await take(stub.ReadChanges(request), 1)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
    client.close()


async def test_a_stream_of_another_generation_is_refused_and_ends_when_it_changes(
    start_ingest: StartIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_api, "DATASET_RECHECK_S", 0.2)
    app = await start_ingest(default_partitions=1)
    client = Client(ingest=app.server.address, retries=0)
    await asyncio.to_thread(client.upload_files, [("r.xml", REPORT)], dataset="ci")
    stub = ingest_pb2_grpc.IngestServiceStub(credentials.aio_channel(app.server.address))
    stale = ingest_pb2.ReadChangesRequest(dataset="ci", from_offsets={0: 0}, generation=7)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await take(stub.ReadChanges(stale), 1)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "generation 1 is live, not 7" in (refused.value.details() or "")

    live = ingest_pb2.ReadChangesRequest(dataset="ci", from_offsets={0: 0}, generation=1)
    stream = stub.ReadChanges(live)
    await take(stream, 1)
    await asyncio.to_thread(client.delete_dataset, "ci")
    await asyncio.to_thread(client.create_dataset, "ci")
    # The new topic reads as empty, not as an error: the stream must notice on its own.
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async with asyncio.timeout(20):
            async for _ in stream:
                pass
    assert ended.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)
    client.close()
