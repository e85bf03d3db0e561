"""One upload's stream, stage by stage: its header, the bytes it spools (acknowledged as they
reach the file, from where an earlier stream of the same resumable upload stopped) up to its end
message, and the progress it reports while the parse and the produce run. The servicer strings
them together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from flakehouse.core.errors import Aborted, DeadlineExceeded, FlakehouseError, InvalidArgument
from flakehouse.ingest.datasets import checked_name
from flakehouse.ingest.metrics import IngestMetrics
from flakehouse.ingest.resumable import Owner, ResumableSpools, check_owner
from flakehouse.ingest.settings import IngestSettings
from flakehouse.ingest.uploads import UPLOAD_ID, Spool, UploadTooLarge
from flakehouse.ingest.v1 import ingest_pb2

PROGRESS_INTERVAL_S = 0.5


@dataclass
class Timings:
    receive_s: float = 0.0
    parse_s: float = 0.0
    produce_s: float = 0.0


class Produced:
    """Events Kafka acknowledged so far, counted by the producer's callback."""

    def __init__(self) -> None:
        self.events = 0

    def add(self, events: int) -> None:
        self.events += events

    def __call__(self) -> int:
        return self.events


class UploadStream:
    def __init__(
        self,
        settings: IngestSettings,
        metrics: IngestMetrics,
        resumable: ResumableSpools,
        requests: AsyncIterator[ingest_pb2.UploadRequest],
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._resumable = resumable
        self._requests = requests
        self._header: ingest_pb2.UploadHeader | None = None
        self._owner: Owner | None = None
        self.format = "unknown"
        self.timings = Timings()

    @property
    def name(self) -> str:
        return (self._header.filename if self._header else "") or "upload"

    async def header(self) -> ingest_pb2.UploadHeader:
        message = await self._next()
        if message is None or not message.HasField("header"):
            self._metrics.rejections.labels("bad_request").inc()
            raise InvalidArgument("the first message of an upload must be its header")
        header = message.header
        try:
            checked_name(header.dataset)
            for key, what in ((header.upload_id, "upload_id"), (header.resume_key, "resume_key")):
                if key and not UPLOAD_ID.fullmatch(key):
                    raise InvalidArgument(f"{what} must match {UPLOAD_ID.pattern}")
        except FlakehouseError:
            self._metrics.rejections.labels("bad_request").inc()
            raise
        self._header = header
        if header.resume_key:
            self._owner = await self._resumable.claim(header.resume_key)
        return header

    def finished(self) -> ingest_pb2.UploadResult | None:
        """The result, when an earlier stream of this resumable upload already finished it."""
        key = self._header.resume_key if self._header else ""
        return self._resumable.finished(key) if key else None

    def succeeded(self, result: ingest_pb2.UploadResult) -> None:
        if self._header and self._header.resume_key:
            self._resumable.remember(self._header.resume_key, result)

    @asynccontextmanager
    async def spooled(self) -> AsyncIterator[Spool]:
        """The upload's spool. A resumable upload's bytes outlive a stream that fails for any
        reason but a refusal of the file, so the next stream continues from them."""
        assert self._header is not None
        header, owner = self._header, self._owner
        if owner is not None:
            spool = await self._resumable.open(header)
            if spool.size:
                self._metrics.resumed.inc()
                self._metrics.resumed_bytes.inc(spool.size)
        else:
            spool = await asyncio.to_thread(Spool.create, self._settings.spool_dir)
        keep = owner is not None
        try:
            yield spool
            keep = False
        except InvalidArgument:
            keep = False
            raise
        finally:
            if owner is not None and self._header:
                self._resumable.release(header.resume_key, owner)
            await asyncio.shield(asyncio.to_thread(spool.release if keep else spool.close))

    async def receive(self, spool: Spool) -> AsyncIterator[ingest_pb2.UploadResponse]:
        """Acknowledges what the spool already holds, then each chunk once it is in the file."""
        started = time.perf_counter()
        yield _progress(ingest_pb2.UPLOAD_STAGE_RECEIVING, spool.size)
        try:
            while (message := await self._next()) is not None:
                if message.HasField("end"):
                    break
                if message.HasField("header"):
                    raise InvalidArgument("an upload has exactly one header")
                if self._owner is not None:
                    check_owner(self._owner)
                spool.write(message.chunk, self._settings.max_upload_bytes)
                self._metrics.bytes.inc(len(message.chunk))
                yield _progress(ingest_pb2.UPLOAD_STAGE_RECEIVING, spool.size)
            else:
                # A cancelled call can end like a finished one: without the end message the
                # file may be cut short, so nothing of it is parsed.
                raise Aborted(f"{self.name}: the stream ended before the upload's end message")
            if message.end.size != spool.size:
                raise InvalidArgument(
                    f"{self.name}: the server holds {spool.size} bytes of the upload, the "
                    f"client says it has {message.end.size} (did the file change?)"
                )
        except UploadTooLarge as exc:
            self._metrics.rejections.labels("too_large").inc()
            raise InvalidArgument(f"{self.name}: {exc}") from None
        except InvalidArgument:
            self._metrics.rejections.labels("bad_request").inc()
            raise
        if self._owner is not None:
            self._owner.receiving = False
        spool.finish()
        self.timings.receive_s = time.perf_counter() - started

    async def while_running(
        self,
        task: asyncio.Future[Any],
        stage: ingest_pb2.UploadStage.ValueType,
        events: Callable[[], int],
    ) -> AsyncIterator[ingest_pb2.UploadResponse]:
        """Progress every PROGRESS_INTERVAL_S until the task ends (its result or error is then
        the task's): the client's sign that the upload is alive."""
        started = time.perf_counter()
        try:
            while not task.done():
                await asyncio.wait([task], timeout=PROGRESS_INTERVAL_S)
                if not task.done():
                    yield _progress(stage, 0, events())
        finally:
            if not task.done():
                task.cancel()
        elapsed = time.perf_counter() - started
        if stage == ingest_pb2.UPLOAD_STAGE_PARSING:
            self.timings.parse_s = elapsed
        else:
            self.timings.produce_s = elapsed
        task.result()  # raises what the stage raised

    async def _next(self) -> ingest_pb2.UploadRequest | None:
        """The next message, or None at the end of the stream; a client that sends nothing for
        receive_idle_s is gone."""
        try:
            async with asyncio.timeout(self._settings.receive_idle_s):
                return await anext(self._requests)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.name}: nothing received for {self._settings.receive_idle_s:g}s"
            ) from None


def _progress(
    stage: ingest_pb2.UploadStage.ValueType, received: int, events: int = 0
) -> ingest_pb2.UploadResponse:
    return ingest_pb2.UploadResponse(
        progress=ingest_pb2.UploadProgress(stage=stage, received_bytes=received, events=events)
    )
