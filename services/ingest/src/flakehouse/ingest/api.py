"""The IngestService servicer: receives uploads, hands them to the parser, produces the result."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from flakehouse.core.authn import readable, require_cluster_admin
from flakehouse.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from flakehouse.core.kafka import KafkaConnection
from flakehouse.core.quota_client import QuotaClient
from flakehouse.events.batch import upload_id_for
from flakehouse.events.errors import EventError
from flakehouse.ingest.changes import CAUGHT_UP, read_changes
from flakehouse.ingest.datasets import Datasets, creating, has_limits
from flakehouse.ingest.files_call import FilesCall
from flakehouse.ingest.formats import FORMAT_ENUMS, FORMATS
from flakehouse.ingest.metrics import IngestMetrics
from flakehouse.ingest.producer import RecordProducer
from flakehouse.ingest.resumable import ResumableSpools
from flakehouse.ingest.settings import IngestSettings
from flakehouse.ingest.upload_stream import Produced, UploadStream
from flakehouse.ingest.uploads import (
    JSON_LINES,
    ParsedUpload,
    Spool,
    join_records,
    json_parts,
    parse_part_to_records,
    parse_to_records,
    recognise,
)
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.ingest.workers import ParseWorkers

BUSY_RETRY_MS = 1000
CHANGE_STREAMS_RETRY_MS = 5000
DATASET_RECHECK_S = 5.0
"""How often a changes stream checks that its dataset is still the one it began reading."""


class IngestApi(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self,
        settings: IngestSettings,
        datasets: Datasets,
        quota: QuotaClient,
        records: RecordProducer,
        workers: ParseWorkers,
        metrics: IngestMetrics,
        resumable: ResumableSpools,
        kafka: KafkaConnection,
    ) -> None:
        self._settings = settings
        self._kafka = kafka
        self._resumable = resumable
        self._datasets = datasets
        self._quota = quota
        self._records = records
        self._files = FilesCall(settings, datasets, quota, records, workers, metrics)
        self._workers = workers
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.max_concurrent_uploads)
        self._change_streams = 0
        # Set by the app from Kafka before the server serves (flakehouse.core.cluster_identity).
        self.cluster_id = ""

    async def CreateDataset(
        self, request: ingest_pb2.CreateDatasetRequest, context: Any
    ) -> ingest_pb2.CreateDatasetResponse:
        if has_limits(request.limits):
            require_cluster_admin("to set limits; create the dataset without them, then ask")
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
        datasets = await self._datasets.list()
        shown = readable([d.name for d in datasets])
        return ingest_pb2.ListDatasetsResponse(datasets=[d for d in datasets if d.name in shown])

    async def GetCluster(
        self, request: ingest_pb2.GetClusterRequest, context: Any
    ) -> ingest_pb2.GetClusterResponse:
        return ingest_pb2.GetClusterResponse(cluster_id=self.cluster_id)

    async def ReadChanges(
        self, request: ingest_pb2.ReadChangesRequest, context: Any
    ) -> AsyncIterator[ingest_pb2.ReadChangesResponse]:
        dataset = await self._datasets.get(request.dataset)
        if request.generation and request.generation != dataset.generation:
            raise FailedPrecondition(_generation_changed(dataset, request.generation))
        unknown = sorted(p for p in request.from_offsets if p >= dataset.partitions)
        if unknown:
            raise InvalidArgument(
                f"dataset {dataset.name!r} has {dataset.partitions} partitions, not {unknown}"
            )
        if self._change_streams >= self._settings.max_change_streams:
            self._metrics.rejections.labels("busy").inc()
            raise ResourceExhausted(
                f"ingest serves {self._settings.max_change_streams} change streams already; "
                "retry later",
                retry_after_ms=CHANGE_STREAMS_RETRY_MS,
            )
        self._change_streams += 1
        try:
            async for response in self._changes(request, dataset):
                yield response
        finally:
            self._change_streams -= 1

    async def _changes(
        self, request: ingest_pb2.ReadChangesRequest, dataset: ingest_pb2.Dataset
    ) -> AsyncIterator[ingest_pb2.ReadChangesResponse]:
        changes = read_changes(
            self._kafka,
            "flakehouse-ingest-changes",
            dataset.topic,
            dict(request.from_offsets),
            local_cluster=self.cluster_id,
            reader_cluster=request.reader_cluster,
        )
        checked = time.monotonic()
        async for change in changes:
            if time.monotonic() - checked >= DATASET_RECHECK_S:
                # Deleted, or deleted and created again: the topic read is no longer the
                # dataset's (and a deleted topic reads as empty, not as an error).
                live = await self._datasets.get(dataset.name)
                if live.generation != dataset.generation:
                    raise FailedPrecondition(_generation_changed(live, dataset.generation))
                checked = time.monotonic()
            if change is CAUGHT_UP:
                yield ingest_pb2.ReadChangesResponse(caught_up=True)
                continue
            yield ingest_pb2.ReadChangesResponse(
                partition=change.partition,
                offset=change.offset,
                origin=change.origin,
                via=change.via,
                batch=change.batch,
                upload_id=change.upload_id,
                end_offset=change.end_offset,
            )

    async def DeleteDataset(
        self, request: ingest_pb2.DeleteDatasetRequest, context: Any
    ) -> ingest_pb2.DeleteDatasetResponse:
        return ingest_pb2.DeleteDatasetResponse(dataset=await self._datasets.delete(request.name))

    async def Upload(
        self, request_iterator: AsyncIterator[ingest_pb2.UploadRequest], context: Any
    ) -> AsyncIterator[ingest_pb2.UploadResponse]:
        await self._admit()
        self._metrics.in_flight.inc()
        upload = UploadStream(
            self._settings, self._metrics, self._resumable, aiter(request_iterator)
        )
        outcome = "failed"
        try:
            async for reply in self._stages(upload):
                yield reply
            outcome = "ok"
        finally:
            self._metrics.in_flight.dec()
            self._metrics.uploads.labels(upload.format, outcome).inc()
            self._slots.release()

    async def UploadFiles(
        self, request: ingest_pb2.UploadFilesRequest, context: Any
    ) -> ingest_pb2.UploadFilesResponse:
        await self._admit()
        self._metrics.in_flight.inc()
        try:
            return await self._files.run(request)
        finally:
            self._metrics.in_flight.dec()
            self._slots.release()

    async def _stages(self, upload: UploadStream) -> AsyncIterator[ingest_pb2.UploadResponse]:
        """Receive, parse, produce, each reporting progress; the result last."""
        header = await upload.header()
        if (done := upload.finished()) is not None:
            yield ingest_pb2.UploadResponse(result=done)
            return
        async with upload.spooled() as spool:
            async for reply in upload.receive(spool):
                yield reply
            parse = asyncio.ensure_future(self._parse(header, spool))
            async for reply in upload.while_running(
                parse, ingest_pb2.UPLOAD_STAGE_PARSING, spool.parsed_events
            ):
                yield reply
            parsed = parse.result()
            upload.format = parsed.format
            dataset, created = await self._datasets.create(
                header.dataset, may_create=creating(header.dataset)
            )
            await self._quota.acquire_lease(header.dataset, parsed.events, spool.size)
            produced = Produced()
            produce = asyncio.ensure_future(
                self._records.produce(
                    dataset.topic, parsed.upload_id, spool.records_path, produced.add
                )
            )
            async for reply in upload.while_running(
                produce, ingest_pb2.UPLOAD_STAGE_PRODUCING, produced
            ):
                yield reply
            offsets = produce.result()
            self._metrics.produce_latency.observe(upload.timings.produce_s)
            result = ingest_pb2.UploadResult(
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
                receive_seconds=upload.timings.receive_s,
                parse_seconds=upload.timings.parse_s,
                produce_seconds=upload.timings.produce_s,
            )
            upload.succeeded(result)
        yield ingest_pb2.UploadResponse(result=result)

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

    async def _parse_in_parts(
        self, header: ingest_pb2.UploadHeader, spool: Spool, upload_id: str, upload_time_us: int
    ) -> ParsedUpload:
        """A large JSON lines file, cut at lines into one part per parse worker, the parts
        parsed at once and their records joined in order: the same events, ids and errors as
        one worker gives (the first part's error wins), in a fraction of the time."""
        cuts = await asyncio.to_thread(json_parts, spool.path, spool.size, self._workers.processes)
        files = [spool.part(index) for index in range(len(cuts))]
        results = await asyncio.gather(
            *(
                self._workers.run(
                    parse_part_to_records,
                    spool.path,
                    records,
                    start=start,
                    end=end,
                    dataset=header.dataset,
                    filename=_name(header),
                    labels=dict(header.labels),
                    upload_id=upload_id,
                    upload_time_us=upload_time_us,
                    progress_path=progress,
                )
                for (start, end), (records, progress) in zip(cuts, files, strict=True)
            ),
            return_exceptions=True,
        )
        parsed: list[ParsedUpload] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            parsed.append(result)
        await asyncio.to_thread(join_records, [records for records, _ in files], spool.records_path)
        return _merged(parsed)

    async def _parse(self, header: ingest_pb2.UploadHeader, spool: Spool) -> ParsedUpload:
        name, labels = _name(header), dict(header.labels)
        upload_time_us = header.upload_time_us or time.time_ns() // 1000
        try:
            fmt = await asyncio.to_thread(recognise, spool.path, FORMATS.get(header.format), name)
            in_parts = self._workers.processes > 1 and fmt == JSON_LINES
            if in_parts and spool.size >= self._settings.parse_in_parts_bytes:
                upload_id = header.upload_id or upload_id_for(
                    header.dataset, labels, spool.digest.digest()
                )
                return await self._parse_in_parts(header, spool, upload_id, upload_time_us)
            return await self._workers.run(
                parse_to_records,
                spool.path,
                spool.records_path,
                dataset=header.dataset,
                filename=name,
                declared_format=fmt,
                labels=labels,
                upload_id=header.upload_id,
                content_digest=spool.digest.digest(),
                upload_time_us=upload_time_us,
                progress_path=spool.progress_path,
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


def _merged(parts: list[ParsedUpload]) -> ParsedUpload:
    by_status: Counter[str] = Counter()
    for part in parts:
        by_status.update(part.by_status)
    return ParsedUpload(
        JSON_LINES,
        parts[0].upload_id,
        sum(part.records for part in parts),
        sum(part.events for part in parts),
        dict(by_status),
    )


def _name(header: ingest_pb2.UploadHeader | None) -> str:
    return (header.filename if header else "") or "upload"


def _generation_changed(live: ingest_pb2.Dataset, asked: int) -> str:
    return (
        f"dataset {live.name!r} was deleted and created again: generation {live.generation} "
        f"is live, not {asked}; its offsets start again from 0"
    )
