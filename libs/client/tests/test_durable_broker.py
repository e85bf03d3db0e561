"""The durable local broker: tansu on the object store (tools/object-store.js). The store honours
conditional writes, and the broker keeps every record it acknowledged through SIGKILLs, handing
no offset out twice (with plain s3rver, which ignores If-None-Match, a restarted broker created
its watermarks again at offset 0 and overwrote acknowledged batches). And the catalog reader
sees every record written before it syncs, though the broker's ListOffsets falls short."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from flakehouse.client.broker import (
    BUCKET,
    S3_STORAGE,
    object_store_command,
    tansu_command,
    tansu_s3_env,
)
from flakehouse.common.v1 import datasets_pb2
from flakehouse.core.catalog import CatalogReader
from flakehouse.core.kafka import KafkaAdmin, KafkaConnection, make_producer
from flakehouse.core.net import free_port, wait_for_port
from flakehouse.core.settings import KafkaSettings

pytestmark = pytest.mark.processes
HOST = "127.0.0.1"


@pytest.fixture
def object_store(tmp_path: Path) -> Iterator[int]:
    port = free_port(HOST)
    process = subprocess.Popen(object_store_command(tmp_path / "objects", HOST, port))
    try:
        assert wait_for_port(HOST, port, 20), "the object store did not listen"
        yield port
    finally:
        process.terminate()
        process.wait(10)


def put(port: int, key: str, body: bytes, **conditions: str) -> tuple[int, str]:
    """PUT an object (conditions as header=value, `_` for `-`); (status, ETag)."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}/{BUCKET}/{key}",
        data=body,
        method="PUT",
        headers={name.replace("_", "-"): value for name, value in conditions.items()},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["ETag"]
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def get(port: int, key: str) -> bytes:
    with urllib.request.urlopen(f"http://{HOST}:{port}/{BUCKET}/{key}", timeout=10) as response:
        return bytes(response.read())


def test_the_object_store_honours_conditional_writes(object_store: int) -> None:
    port = object_store
    assert put(port, "w.json", b"0", If_None_Match="*")[0] == 200
    assert put(port, "w.json", b"1", If_None_Match="*") == (412, "")  # exists: refused
    status, etag = put(port, "w.json", b"1")
    assert status == 200 and etag == f'"{hashlib.md5(b"1").hexdigest()}"'
    assert put(port, "w.json", b"2", If_Match='"0000"') == (412, "")  # changed meanwhile
    assert put(port, "w.json", b"2", If_Match=etag)[0] == 200
    assert put(port, "missing.json", b"x", If_Match=etag) == (404, "")
    assert get(port, "w.json") == b"2"


async def produce(bootstrap: str, values: list[bytes]) -> dict[int, bytes]:
    """Sends the values (concurrently, so several share a batch); offset -> value of those
    acknowledged before the broker died."""
    producer = make_producer(KafkaConnection(bootstrap), "test", timeout_s=5)
    await producer.start()
    acked: dict[int, bytes] = {}

    async def send(value: bytes) -> None:
        try:
            written = await producer.send_and_wait("t", value, partition=0)
        except Exception:  # the broker was killed: not acknowledged
            return
        assert written.offset not in acked, f"offset {written.offset} handed out twice"
        acked[written.offset] = value

    try:
        await asyncio.gather(*(send(value) for value in values))
    finally:
        # The broker may be gone: what is left unsent was never acknowledged.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 5)
    return acked


async def read_all(bootstrap: str) -> dict[int, bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    tp = TopicPartition("t", 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    got: dict[int, bytes] = {}
    try:
        while True:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                got.update((m.offset, m.value) for m in messages if m.value is not None)
            end = consumer.highwater(tp)
            if end is not None and await consumer.position(tp) >= end:
                return got
    finally:
        await consumer.stop()


class DurableBroker:
    """tansu on the object store, on a free port; `restart()` after a SIGKILL."""

    def __init__(self, object_store_port: int, log_path: Path) -> None:
        self.port = free_port(HOST)
        self.bootstrap = f"{HOST}:{self.port}"
        self._env = {**os.environ, **tansu_s3_env(HOST, object_store_port)}
        self._log = log_path.open("ab")
        self.process = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        self.process = subprocess.Popen(
            tansu_command(HOST, self.port, S3_STORAGE),
            env=self._env,
            stdout=self._log,
            stderr=self._log,
        )
        assert wait_for_port(HOST, self.port, 30), "the broker did not listen"
        return self.process

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        self.kill()
        self._log.close()


@pytest.fixture
def durable_broker(object_store: int, tmp_path: Path) -> Iterator[DurableBroker]:
    broker = DurableBroker(object_store, tmp_path / "tansu.log")
    try:
        yield broker
    finally:
        broker.close()


async def test_acknowledged_records_survive_sigkills_of_the_broker(
    durable_broker: DurableBroker,
) -> None:
    bootstrap = durable_broker.bootstrap
    admin = KafkaAdmin(KafkaConnection(bootstrap), "test")
    await admin.start()
    await admin.create_topic("t", 1)
    await admin.close()
    acked: dict[int, bytes] = {}
    for round in range(3):
        sending = asyncio.ensure_future(
            produce(bootstrap, [f"{round}-{i}".encode() for i in range(200)])
        )
        await asyncio.sleep(0.3)
        durable_broker.kill()
        got = await sending
        assert not set(got) & set(acked), "an acknowledged offset was handed out again"
        acked.update(got)
        durable_broker.start()
    acked.update(await produce(bootstrap, [f"last-{i}".encode() for i in range(20)]))
    stored = await read_all(bootstrap)
    assert len(acked) >= 220
    assert {offset: stored.get(offset) for offset in acked} == acked


async def test_a_catalog_reader_sees_what_another_process_wrote_a_moment_before(
    durable_broker: DurableBroker,
) -> None:
    """The broker answers ListOffsets with one past the batch it last modified, to the second:
    short of records written within the same second, until a later second's write. A reader
    learns the end from fetches instead."""
    settings = KafkaSettings(kafka_bootstrap=durable_broker.bootstrap, topic_prefix="p")
    kafka = KafkaConnection.from_settings(settings)
    writer, reader = (
        CatalogReader(settings, kafka, "writer"),
        CatalogReader(settings, kafka, "reader"),
    )
    producer = make_producer(kafka, "writer")
    await writer.start()
    await reader.start()
    await producer.start()
    try:
        for name in ("a", "b", "c"):
            record = datasets_pb2.DatasetRecord(name=name, generation=1, topic=f"p.{name}")
            await writer.write(producer, record)
        assert sorted((await reader.sync()).records) == ["a", "b", "c"]
        await writer.write(producer, datasets_pb2.DatasetRecord(name="a", generation=2))
        assert (await reader.sync()).records["a"].generation == 2
    finally:
        await producer.stop()
        await writer.stop()
        await reader.stop()
