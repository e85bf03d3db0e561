"""The IngestService servicer: receives uploads, hands them to the parser, produces the result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from flakehouse.core.errors import InvalidArgument, ResourceExhausted, Unavailable
from flakehouse.events.errors import EventError
from flakehouse.ingest.datasets import Datasets, checked_name
from flakehouse.ingest.metrics import IngestMetrics
from flakehouse.ingest.quota_client import QuotaClient
from flakehouse.ingest.settings import IngestSettings
from flakehouse.ingest.uploads import (
    JSON_LINES,
    JUNIT_XML,
    UPLOAD_ID,
    ParsedUpload,
    Spool,
    UploadTooLarge,
    parse_to_records,
)
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.ingest.workers import ParseWorkers

FORMATS = {
    ingest_pb2.UPLOAD_FORMAT_UNSPECIFIED: None,
    ingest_pb2.UPLOAD_FORMAT_JUNIT_XML: JUNIT_XML,
    ingest_pb2.UPLOAD_FORMAT_JSON_LINES: JSON_LINES,
}
FORMAT_ENUMS = {
    JUNIT_XML: ingest_pb2.UPLOAD_FORMAT_JUNIT_XML,
    JSON_LINES: ingest_pb2.UPLOAD_FORMAT_JSON_LINES,
}

Produce = Callable[[str, str, Path], Awaitable[dict[int, int]]]
BUSY_RETRY_MS = 1000


class IngestApi(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self,
        settings: IngestSettings,
        datasets: Datasets,
        quota: QuotaClient,
        produce: Produce,
        workers: ParseWorkers,
        metrics: IngestMetrics,
    ) -> None:
        self._settings = settings
        self._datasets = datasets
        self._quota = quota
        self._produce = produce
        self._workers = workers
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.max_concurrent_uploads)

    async def CreateDataset(
        self, request: ingest_pb2.CreateDatasetRequest, context: Any
    ) -> ingest_pb2.CreateDatasetResponse:
        dataset, created = await self._datasets.create(
            request.name, request.partitions, request.limits
        )
        return ingest_pb2.CreateDatasetResponse(dataset=dataset, created=created)

    async def GetDataset(
        self, request: ingest_pb2.GetDatasetRequest, context: Any
    ) -> ingest_pb2.GetDatasetResponse:
        return ingest_pb2.GetDatasetResponse(dataset=await self._datasets.get(request.name))

    async def ListDatasets(
        self, request: ingest_pb2.ListDatasetsRequest, context: Any
    ) -> ingest_pb2.ListDatasetsResponse:
        return ingest_pb2.ListDatasetsResponse(datasets=await self._datasets.list())

    async def DeleteDataset(
        self, request: ingest_pb2.DeleteDatasetRequest, context: Any
    ) -> ingest_pb2.DeleteDatasetResponse:
        return ingest_pb2.DeleteDatasetResponse(dataset=await self._datasets.delete(request.name))

    async def Upload(
        self, request_iterator: AsyncIterator[ingest_pb2.UploadRequest], context: Any
    ) -> ingest_pb2.UploadResponse:
        await self._admit()
        fmt = "unknown"
        self._metrics.in_flight.inc()
        try:
            header, spool = await self._receive(request_iterator)
            try:
                parsed = await self._parse(header, spool)
                fmt = parsed.format
                dataset, created = await self._datasets.create(header.dataset)
                await self._quota.acquire_lease(header.dataset, parsed.events, spool.size)
                started = time.perf_counter()
                offsets = await self._produce(dataset.topic, parsed.upload_id, spool.records_path)
                self._metrics.produce_latency.observe(time.perf_counter() - started)
            finally:
                await asyncio.to_thread(spool.close)
        except Exception:
            self._metrics.uploads.labels(fmt, "failed").inc()
            raise
        finally:
            self._metrics.in_flight.dec()
            self._slots.release()
        self._metrics.uploads.labels(fmt, "ok").inc()
        return ingest_pb2.UploadResponse(
            upload_id=parsed.upload_id,
            dataset=header.dataset,
            events=parsed.events,
            events_by_status=parsed.by_status,
            offsets=[
                ingest_pb2.PartitionOffset(partition=p, offset=o)
                for p, o in sorted(offsets.items())
            ],
            dataset_created=created,
            format=FORMAT_ENUMS[parsed.format],
        )

    async def _admit(self) -> None:
        """Takes an upload slot, waiting a little for one; past that the caller is told to come
        back later instead of queueing without bound."""
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._settings.admission_wait_s)
        except TimeoutError:
            self._metrics.rejections.labels("busy").inc()
            raise ResourceExhausted(
                f"ingest is busy with {self._settings.max_concurrent_uploads} uploads; retry later",
                retry_after_ms=BUSY_RETRY_MS,
            ) from None

    async def _receive(
        self, request_iterator: AsyncIterator[ingest_pb2.UploadRequest]
    ) -> tuple[ingest_pb2.UploadHeader, Spool]:
        header: ingest_pb2.UploadHeader | None = None
        spool = await asyncio.to_thread(Spool.create, self._settings.spool_dir)
        try:
            async for message in request_iterator:
                if message.HasField("header"):
                    if header is not None:
                        raise InvalidArgument("an upload has exactly one header")
                    header = message.header
                elif header is None:
                    raise InvalidArgument("the first message of an upload must be its header")
                else:
                    spool.write(message.chunk, self._settings.max_upload_bytes)
                    self._metrics.bytes.inc(len(message.chunk))
            if header is None:
                raise InvalidArgument("empty upload: no header")
            checked_name(header.dataset)
            if header.upload_id and not UPLOAD_ID.fullmatch(header.upload_id):
                raise InvalidArgument("upload_id must match " + UPLOAD_ID.pattern)
            spool.finish()
            return header, spool
        except UploadTooLarge as exc:
            self._metrics.rejections.labels("too_large").inc()
            spool.close()
            raise InvalidArgument(f"{_name(header)}: {exc}") from None
        except BaseException:
            self._metrics.rejections.labels("bad_request").inc()
            spool.close()
            raise

    async def _parse(self, header: ingest_pb2.UploadHeader, spool: Spool) -> ParsedUpload:
        try:
            return await self._workers.run(
                parse_to_records,
                spool.path,
                spool.records_path,
                dataset=header.dataset,
                filename=_name(header),
                declared_format=FORMATS.get(header.format),
                labels=dict(header.labels),
                upload_id=header.upload_id,
                content_digest=spool.digest.digest(),
                upload_time_us=header.upload_time_us or time.time_ns() // 1000,
            )
        except EventError as exc:
            self._metrics.rejections.labels("unparsable").inc()
            raise InvalidArgument(str(exc)) from None
        except ValueError as exc:  # bad labels
            self._metrics.rejections.labels("bad_labels").inc()
            raise InvalidArgument(f"{_name(header)}: {exc}") from None
        except BrokenProcessPool:
            raise Unavailable(
                "the parser worker died (out of memory?); retry", retry_after_ms=BUSY_RETRY_MS
            ) from None


def _name(header: ingest_pb2.UploadHeader | None) -> str:
    return (header.filename if header else "") or "upload"
