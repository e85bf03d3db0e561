"""Resumable uploads against the ingest service in-process on the real broker: a stream cut in
the middle continues from the bytes the server holds, a key cannot be reused for another
upload, a finished upload answers again without its bytes, and a refused file leaves nothing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.ingest.app import IngestApp
from flakehouse.ingest.resumable import ResumableSpools
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.tests.test_ingest_service import read_topic, start_ingest
from tests import credentials

pytestmark = [pytest.mark.processes, pytest.mark.broker]
CHUNK = 256 * 1024
LINES = 20_000


def json_lines(lines: int, seed: str = "") -> bytes:
    return b"".join(
        json.dumps(
            {"name": f"test_{seed}{i}", "suite": f"suite{i % 7}", "status": "passed", "duration": i}
        ).encode()
        + b"\n"
        for i in range(lines)
    )


def header(key: str, **fields: object) -> ingest_pb2.UploadRequest:
    values: dict[str, object] = {
        "dataset": "ci",
        "filename": "events.jsonl",
        "format": ingest_pb2.UPLOAD_FORMAT_JSON_LINES,
        "resume_key": key,
    }
    values.update(fields)
    return ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(**values))  # type: ignore[arg-type]


@pytest.fixture
async def ingest(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[IngestApp]:
    app = await start_ingest(
        broker.bootstrap, topic_prefix, parse_workers=0, spool_dir=str(tmp_path / "spool")
    )
    yield app
    await app.stop()


def stub_of(app: IngestApp) -> ingest_pb2_grpc.IngestServiceAsyncStub:
    return ingest_pb2_grpc.IngestServiceStub(credentials.aio_channel(app.server.address))  # type: ignore[return-value]


async def first_reply(call: grpc.aio.StreamStreamCall) -> ingest_pb2.UploadResponse:  # type: ignore[type-arg]
    reply = await call.read()
    assert reply is not grpc.aio.EOF
    return reply  # type: ignore[no-any-return]


async def send_rest(
    call: grpc.aio.StreamStreamCall,  # type: ignore[type-arg]
    data: bytes,
    start: int,
) -> ingest_pb2.UploadResult:
    for offset in range(start, len(data), CHUNK):
        await call.write(ingest_pb2.UploadRequest(chunk=data[offset : offset + CHUNK]))
    await call.write(ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size=len(data))))
    await call.done_writing()
    while (reply := await call.read()) is not grpc.aio.EOF:
        if reply.HasField("result"):
            return reply.result  # type: ignore[no-any-return]
    raise AssertionError("no result")


async def test_a_cut_stream_resumes_from_the_bytes_the_server_holds(
    ingest: IngestApp, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    data = json_lines(LINES)
    stub = stub_of(ingest)

    first = stub.Upload()
    await first.write(header("cut-1"))
    assert (await first_reply(first)).progress.received_bytes == 0
    for offset in range(0, 4 * CHUNK, CHUNK):
        await first.write(ingest_pb2.UploadRequest(chunk=data[offset : offset + CHUNK]))
    held = 0
    while held < 4 * CHUNK:
        held = (await first_reply(first)).progress.received_bytes
    first.cancel()

    deadline = time.monotonic() + 10
    while True:  # the server notices the cancel and lets go of the key
        second = stub.Upload()
        await second.write(header("cut-1"))
        reply = await first_reply(second)
        if reply.progress.received_bytes == 4 * CHUNK or time.monotonic() > deadline:
            break
    assert reply.progress.stage == ingest_pb2.UPLOAD_STAGE_RECEIVING
    assert reply.progress.received_bytes == 4 * CHUNK
    result = await send_rest(second, data, 4 * CHUNK)
    assert result.events == LINES
    assert result.receive_seconds > 0 and result.parse_seconds > 0 and result.produce_seconds > 0

    batches = await read_topic(broker.bootstrap, f"{topic_prefix}.ci", 2)
    assert sum(batch.row_count for batch in batches) == LINES
    assert ingest.metrics.resumed._value.get() == 1
    assert ingest.metrics.resumed_bytes._value.get() == 4 * CHUNK

    # The upload is over: its bytes are gone, and its key answers with the same result.
    assert not list((Path(ingest.settings.spool_dir or "") / "resumable").iterdir())
    again = stub.Upload()
    await again.write(header("cut-1"))
    await again.done_writing()
    assert (await first_reply(again)).result == result


async def test_a_stream_without_its_end_message_is_cut_not_finished(ingest: IngestApp) -> None:
    # A cancelled call can look to the server like one that ended normally: cut at a line
    # boundary, this file would parse, and its first half would count as the whole upload.
    data = json_lines(1000)
    half = data[: data.index(b"\n", len(data) // 2) + 1]
    stub = stub_of(ingest)
    call = stub.Upload()
    await call.write(header("half"))
    await first_reply(call)
    await call.write(ingest_pb2.UploadRequest(chunk=half))
    await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as cut:
        while await call.read() is not grpc.aio.EOF:
            pass
    assert cut.value.code() == grpc.StatusCode.ABORTED

    resumed = stub.Upload()
    await resumed.write(header("half"))
    assert (await first_reply(resumed)).progress.received_bytes == len(half)
    assert (await send_rest(resumed, data, len(half))).events == 1000


async def test_a_key_belongs_to_one_upload(ingest: IngestApp) -> None:
    stub = stub_of(ingest)
    first = stub.Upload()
    await first.write(header("mine"))
    await first_reply(first)
    await first.write(ingest_pb2.UploadRequest(chunk=json_lines(10)))
    await first_reply(first)
    first.cancel()

    other = stub.Upload(iter([header("mine", labels={"branch": "main"})]))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in other:
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "belongs to another upload" in (refused.value.details() or "")


async def test_a_refused_file_leaves_no_bytes_behind(ingest: IngestApp) -> None:
    stub = stub_of(ingest)
    call = stub.Upload()
    await call.write(header("bad"))
    await first_reply(call)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await send_rest(call, b'{"name": "a"}\n{"name": \n', 0)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith("events.jsonl:2: ")
    assert not list((Path(ingest.settings.spool_dir or "") / "resumable").iterdir())


def test_the_sweep_removes_what_nobody_came_back_for(tmp_path: Path) -> None:
    spools = ResumableSpools(str(tmp_path), ttl_s=60)
    spool = spools._open(header("old").header)
    spool.write(b"x" * 10, max_bytes=100)
    spool.release()
    fresh = spools._open(header("fresh").header)
    fresh.release()
    an_hour_ago = time.time() - 3600
    os.utime(spool.path, (an_hour_ago, an_hour_ago))

    assert spools.sweep() == 1
    assert sorted(p.name for p in (tmp_path / "resumable").iterdir()) == ["fresh", "fresh.header"]
