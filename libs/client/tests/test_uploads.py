"""The client's side of resumable uploads, against a stand-in ingest service: the deadline is on
progress, not on the upload; a silent stream is cancelled and the upload resumes from the bytes
the server says it holds; a server that never moves is given up on with the option to raise."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from flakehouse.client.client import Client
from flakehouse.client.uploads import CHUNK_BYTES, WINDOW_BYTES
from flakehouse.core.errors import DeadlineExceeded
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from libs.client.tests.fake_servers import serving

DATA = bytes(range(256)) * (12 * CHUNK_BYTES // 256)  # 12 chunks


def received(size: int) -> ingest_pb2.UploadResponse:
    return ingest_pb2.UploadResponse(
        progress=ingest_pb2.UploadProgress(
            stage=ingest_pb2.UPLOAD_STAGE_RECEIVING, received_bytes=size
        )
    )


class Stalling(ingest_pb2_grpc.IngestServiceServicer):
    """Holds what every stream sent under its resume key. The first `stalls` streams fall silent
    after `stall_after` bytes (as a server whose disk or network hangs), the others finish."""

    def __init__(self, stalls: int, stall_after: int) -> None:
        self.stalls = stalls
        self.stall_after = stall_after
        self.held: dict[str, bytearray] = {}
        self.starts: list[int] = []
        self.keys: list[str] = []
        self.released = threading.Event()

    def Upload(self, requests: Iterator[Any], context: Any) -> Iterator[ingest_pb2.UploadResponse]:
        header = next(requests).header
        self.keys.append(header.resume_key)
        held = self.held.setdefault(header.resume_key, bytearray())
        self.starts.append(len(held))
        stalling = len(self.starts) <= self.stalls
        yield received(len(held))
        for request in requests:
            if request.HasField("end"):
                break
            if stalling and len(held) >= self.stall_after:
                self.released.wait(30)  # silent until the client gives up on the stream
                return
            held += request.chunk
            yield received(len(held))
        yield ingest_pb2.UploadResponse(
            result=ingest_pb2.UploadResult(upload_id="u", dataset=header.dataset, events=len(held))
        )


@pytest.fixture
def stalling() -> Iterator[tuple[Stalling, str]]:
    service = Stalling(stalls=1, stall_after=4 * CHUNK_BYTES)
    with serving(service, ingest_pb2_grpc.add_IngestServiceServicer_to_server) as address:
        try:
            yield service, address
        finally:
            service.released.set()


def test_a_silent_stream_is_cancelled_and_the_upload_resumes(
    stalling: tuple[Stalling, str],
) -> None:
    service, address = stalling
    with Client(ingest=address, timeout_s=0.5, retries=3) as client:
        result = client.upload(DATA, dataset="ci", filename="big.jsonl")
    assert result.events == len(DATA), "the server holds the file once, whole"
    assert result.streams == 2 and service.starts == [0, 4 * CHUNK_BYTES]
    assert len(set(service.keys)) == 1 and len(service.keys[0]) == 32
    # The first stream had sent at most a window past what the server acknowledged.
    assert len(DATA) < result.sent_bytes <= len(DATA) + WINDOW_BYTES


def test_a_server_that_never_moves_is_given_up_on_naming_the_option(
    stalling: tuple[Stalling, str],
) -> None:
    service, address = stalling
    service.stalls, service.stall_after = 100, 0
    expected = r"no progress .* for 0\.3s \(raise it with --timeout\)"
    with (
        Client(ingest=address, timeout_s=0.3, retries=2) as client,
        pytest.raises(DeadlineExceeded, match=expected),
    ):
        client.upload(DATA, dataset="ci")
    # The first stream got its first reply; the next three got no further: retries=2 of them.
    assert service.starts == [0, 0, 0, 0]


def test_a_stream_cut_by_the_server_resumes_at_once() -> None:
    class Cutting(Stalling):
        def Upload(
            self, requests: Iterator[Any], context: Any
        ) -> Iterator[ingest_pb2.UploadResponse]:
            if not self.starts:
                header = next(requests).header
                self.keys.append(header.resume_key)
                self.starts.append(0)
                held = self.held.setdefault(header.resume_key, bytearray())
                yield received(0)
                held += next(requests).chunk
                context.abort(grpc.StatusCode.UNAVAILABLE, "ingest is restarting")
            yield from super().Upload(requests, context)

    cutting = Cutting(stalls=0, stall_after=0)
    with (
        serving(cutting, ingest_pb2_grpc.add_IngestServiceServicer_to_server) as cut_address,
        Client(ingest=cut_address, timeout_s=30, retries=3) as client,
    ):
        result = client.upload(DATA, dataset="ci")
    assert result.events == len(DATA) and cutting.starts == [0, CHUNK_BYTES]
    assert result.streams == 2
