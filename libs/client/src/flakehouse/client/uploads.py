"""Resumable uploads over the ingest service's bidirectional Upload stream.

The client names each upload with a random resume key. The server's first reply says how many
bytes it already holds under that key; the client sends the file from there, at most
WINDOW_BYTES ahead of what the server acknowledged. There is no deadline on the whole upload,
only on progress: a stream that brings no reply for `stall_s` seconds is cancelled, and a stream
that fails for a transient reason (the connection dropped, the ingest process restarted, the
stall) is opened again with the same key. So a cut in the middle of a 2 GB file costs what was
in flight, at most one window."""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import grpc

from flakehouse.client.errortext import tls_failure
from flakehouse.core.errors import (
    Aborted,
    DeadlineExceeded,
    FlakehouseError,
    ResourceExhausted,
    Unavailable,
)
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc

CHUNK_BYTES = 1024 * 1024
WINDOW_BYTES = 8 * CHUNK_BYTES
MAX_BACKOFF_S = 8.0
STAGES = {
    ingest_pb2.UPLOAD_STAGE_RECEIVING: "receiving",
    ingest_pb2.UPLOAD_STAGE_PARSING: "parsing",
    ingest_pb2.UPLOAD_STAGE_PRODUCING: "producing",
}


@dataclass(frozen=True)
class UploadProgress:
    """What the server reported last: its stage, the bytes it holds, and the events parsed
    (parsing) or acknowledged by Kafka (producing)."""

    stage: str
    received_bytes: int
    events: int


@dataclass
class StreamStats:
    """Across the streams of one upload: bytes sent in all (a resumed stream sends again what
    was in flight when the last one broke) and how many streams it took."""

    sent_bytes: int = 0
    streams: int = 0


class Stalled(Exception):
    """The watchdog cancelled a stream that brought no reply for too long."""


class _Stream:
    """One Upload call: sends from the offset the server's first reply names, keeps within the
    window of what it acknowledged, and records when a reply last arrived."""

    def __init__(self, header: ingest_pb2.UploadHeader, open_source: Callable[[], IO[bytes]]):
        self._header = header
        self._open_source = open_source
        self._state = threading.Condition()
        self._start: int | None = None
        self._acked = 0
        self._done = False
        self.sent = 0
        self.last_reply = time.monotonic()

    def requests(self) -> Iterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(header=self._header)
        with self._state:
            self._state.wait_for(lambda: self._start is not None or self._done)
            if self._done:
                return
            offset = self._start
        assert offset is not None
        with self._open_source() as source:
            source.seek(offset)
            while self._wait_for_window(offset):
                chunk = source.read(CHUNK_BYTES)
                if not chunk:
                    yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size=offset))
                    return
                offset += len(chunk)
                self.sent += len(chunk)
                yield ingest_pb2.UploadRequest(chunk=chunk)

    def _wait_for_window(self, offset: int) -> bool:
        """Waits until the server acknowledged enough to send from offset; False once the
        stream is over."""
        with self._state:
            self._state.wait_for(lambda: offset - self._acked < WINDOW_BYTES or self._done)
            return not self._done

    def replied(self, progress: ingest_pb2.UploadProgress | None) -> None:
        with self._state:
            self.last_reply = time.monotonic()
            if progress is not None and progress.stage == ingest_pb2.UPLOAD_STAGE_RECEIVING:
                if self._start is None:
                    self._start = progress.received_bytes
                self._acked = max(self._acked, progress.received_bytes)
            self._state.notify_all()

    def stop(self) -> None:
        with self._state:
            self._done = True
            self._state.notify_all()


class _Cancellable(Protocol):
    def cancel(self) -> bool: ...


class _Watchdog:
    """One daemon thread that cancels calls whose stream has been silent for too long."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[_Cancellable, _Stream, float]] = {}
        self._stalled: set[int] = set()
        self._thread: threading.Thread | None = None

    def watch(self, call: _Cancellable, stream: _Stream, stall_s: float) -> None:
        with self._lock:
            self._watched[id(stream)] = (call, stream, stall_s)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="upload-watchdog", daemon=True
                )
                self._thread.start()

    def forget(self, stream: _Stream) -> bool:
        """Stops watching; whether the watchdog cancelled the stream."""
        with self._lock:
            self._watched.pop(id(stream), None)
            if id(stream) in self._stalled:
                self._stalled.discard(id(stream))
                return True
            return False

    def _run(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self._lock:
                silent = [
                    (key, call)
                    for key, (call, stream, stall_s) in self._watched.items()
                    if now - stream.last_reply > stall_s
                ]
                for key, _ in silent:
                    self._stalled.add(key)
                    del self._watched[key]
            for _, call in silent:
                call.cancel()


_WATCHDOG = _Watchdog()


def upload_resumably(
    stub: ingest_pb2_grpc.IngestServiceStub,
    header: ingest_pb2.UploadHeader,
    open_source: Callable[[], IO[bytes]],
    *,
    stall_s: float,
    retries: int,
    error_from_rpc: Callable[[grpc.RpcError], FlakehouseError],
    on_progress: Callable[[UploadProgress], None] | None = None,
) -> tuple[ingest_pb2.UploadResult, StreamStats]:
    """Sends one upload, resuming it after transient failures; the server's result. Gives up
    after `retries` streams in a row that made no progress; with retries 0, after the first."""
    keyed = ingest_pb2.UploadHeader()
    keyed.CopyFrom(header)
    keyed.resume_key = keyed.resume_key or secrets.token_hex(16)
    stats = StreamStats()
    fruitless = 0
    best: Reached = (0, -1, 0)
    while True:
        stream = _Stream(keyed, open_source)
        stats.streams += 1
        try:
            result = _one_stream(stub, stream, stall_s, error_from_rpc, on_progress)
            stats.sent_bytes += stream.sent
            return result, stats
        except _Broken as broken:
            stats.sent_bytes += stream.sent
            reached, error = broken.reached, broken.error
        fruitless = 0 if reached > best else fruitless + 1
        best = max(best, reached)
        if retries == 0 or fruitless > retries:
            raise error from None
        delay = error.retry_after_ms / 1000 if error.retry_after_ms else 0.25 * 2**fruitless
        time.sleep(min(MAX_BACKOFF_S, delay) * (0.5 + random.random()))


Reached = tuple[int, int, int]
"""How far a stream got: (stage, bytes the server held, events): later stages are further."""


class _Broken(Exception):
    def __init__(self, error: FlakehouseError, reached: Reached) -> None:
        self.error = error
        self.reached = reached


def _one_stream(
    stub: ingest_pb2_grpc.IngestServiceStub,
    stream: _Stream,
    stall_s: float,
    error_from_rpc: Callable[[grpc.RpcError], FlakehouseError],
    on_progress: Callable[[UploadProgress], None] | None,
) -> ingest_pb2.UploadResult:
    """The result of one stream, or _Broken with how far the server got (bytes it held, or
    past them once it parsed) when the stream failed in a way worth another stream."""
    call = stub.Upload(stream.requests())
    _WATCHDOG.watch(call, stream, stall_s)
    reached: Reached = (0, -1, 0)
    try:
        for reply in call:
            if reply.HasField("result"):
                return reply.result
            progress = reply.progress
            stream.replied(progress)
            reached = max(reached, (progress.stage, progress.received_bytes, progress.events))
            if on_progress is not None:
                on_progress(
                    UploadProgress(
                        STAGES.get(progress.stage, "receiving"),
                        progress.received_bytes,
                        progress.events,
                    )
                )
        raise _Broken(Unavailable("the upload stream ended without a result"), reached)
    except grpc.RpcError as exc:
        if _WATCHDOG.forget(stream):
            raise _Broken(
                DeadlineExceeded(
                    f"no progress from the ingest service for {stall_s:g}s "
                    "(raise it with --timeout)"
                ),
                reached,
            ) from None
        error = error_from_rpc(exc)
        if _transient(error):
            raise _Broken(error, reached) from None
        raise error from None
    finally:
        _WATCHDOG.forget(stream)
        stream.stop()


def _transient(error: FlakehouseError) -> bool:
    if isinstance(error, ResourceExhausted):
        return error.retry_after_ms is not None
    if tls_failure(error.message):
        return False
    return isinstance(error, Unavailable | Aborted | DeadlineExceeded)


def open_source(source: Path | bytes) -> Callable[[], IO[bytes]]:
    import io

    if isinstance(source, Path):
        return lambda: source.open("rb")
    return lambda: io.BytesIO(source)
