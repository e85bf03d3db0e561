"""One UploadFiles call: several small files, each its own upload, checked together, parsed in
one worker call, leased from quota once and produced at once, with an outcome per file. A file
that does not parse is refused alone and writes nothing; the call fails as a whole only for what
concerns them all (a bad request, quota, Kafka), and resending it then never counts twice."""

from __future__ import annotations

import time
from concurrent.futures.process import BrokenProcessPool

from flakehouse.core.errors import InvalidArgument, Unavailable
from flakehouse.core.quota_client import QuotaClient
from flakehouse.events.model import check_parse_arguments
from flakehouse.ingest.datasets import Datasets, checked_name, creating
from flakehouse.ingest.file_batches import ParsedFile, RefusedFile, parse_files
from flakehouse.ingest.formats import FORMAT_ENUMS, FORMATS
from flakehouse.ingest.metrics import IngestMetrics
from flakehouse.ingest.producer import RecordProducer, last_offsets
from flakehouse.ingest.settings import IngestSettings
from flakehouse.ingest.uploads import UPLOAD_ID
from flakehouse.ingest.v1 import ingest_pb2
from flakehouse.ingest.workers import ParseWorkers

WORKER_RETRY_MS = 1000


class FilesCall:
    def __init__(
        self,
        settings: IngestSettings,
        datasets: Datasets,
        quota: QuotaClient,
        records: RecordProducer,
        workers: ParseWorkers,
        metrics: IngestMetrics,
    ) -> None:
        self._settings = settings
        self._datasets = datasets
        self._quota = quota
        self._records = records
        self._workers = workers
        self._metrics = metrics

    async def run(self, request: ingest_pb2.UploadFilesRequest) -> ingest_pb2.UploadFilesResponse:
        self._check(request)
        self._metrics.bytes.inc(sum(len(file.content) for file in request.files))
        started = time.perf_counter()
        outcomes = await self._parse(request)
        parse_s = time.perf_counter() - started
        parsed = [o for o in outcomes if isinstance(o, ParsedFile)]
        landed: list[list[tuple[int, int]]] = []
        produce_s, created = 0.0, False
        if parsed:
            dataset, created = await self._datasets.create(
                request.dataset, may_create=creating(request.dataset)
            )
            size = sum(
                len(f.content)
                for f, o in zip(request.files, outcomes, strict=True)
                if isinstance(o, ParsedFile)
            )
            events = sum(file.parsed.events for file in parsed)
            await self._quota.acquire_lease(request.dataset, events, size)
            started = time.perf_counter()
            landed = await self._produce(dataset.topic, parsed)
            produce_s = time.perf_counter() - started
            self._metrics.produce_latency.observe(produce_s)
        share = 1 / len(outcomes)
        where = iter(landed)
        response = ingest_pb2.UploadFilesResponse()
        for outcome in outcomes:
            if isinstance(outcome, RefusedFile):
                self._metrics.rejections.labels("unparsable").inc()
                self._metrics.uploads.labels("unknown", "failed").inc()
                rejection = ingest_pb2.FileRejection(
                    code="INVALID_ARGUMENT", message=outcome.message
                )
                response.outcomes.add(rejection=rejection)
                continue
            file = outcome.parsed
            self._metrics.uploads.labels(file.format, "ok").inc()
            offsets = last_offsets(next(where))
            response.outcomes.add(
                result=ingest_pb2.UploadResult(
                    upload_id=file.upload_id,
                    dataset=request.dataset,
                    events=file.events,
                    events_by_status=file.by_status,
                    offsets=[
                        ingest_pb2.PartitionOffset(partition=p, offset=o)
                        for p, o in sorted(offsets.items())
                    ],
                    dataset_created=created,
                    format=FORMAT_ENUMS[file.format],
                    parse_seconds=parse_s * share,
                    produce_seconds=produce_s * share,
                )
            )
            created = False  # said once, by the first file
        return response

    def _check(self, request: ingest_pb2.UploadFilesRequest) -> None:
        """What would refuse every file: refused before anything is parsed."""
        try:
            checked_name(request.dataset)
            if not request.files:
                raise InvalidArgument("an UploadFiles call needs at least one file")
            size = sum(len(file.content) for file in request.files)
            if size > self._settings.max_files_request_bytes:
                raise InvalidArgument(
                    f"UploadFiles takes at most {self._settings.max_files_request_bytes} bytes "
                    f"of files per call (this one: {size}); send larger files through Upload"
                )
            for file in request.files:
                if file.upload_id and not UPLOAD_ID.fullmatch(file.upload_id):
                    raise InvalidArgument(
                        f"{file.filename or 'upload'}: upload_id must match {UPLOAD_ID.pattern}"
                    )
            try:
                check_parse_arguments(dict(request.labels), request.upload_time_us)
            except ValueError as exc:
                self._metrics.rejections.labels("bad_labels").inc()
                raise InvalidArgument(str(exc)) from None
        except InvalidArgument:
            self._metrics.rejections.labels("bad_request").inc()
            raise

    async def _parse(
        self, request: ingest_pb2.UploadFilesRequest
    ) -> list[ParsedFile | RefusedFile]:
        try:
            return await self._workers.run(
                parse_files,
                [(f.filename or "upload", f.content, f.upload_id) for f in request.files],
                dataset=request.dataset,
                declared_format=FORMATS.get(request.format),
                labels=dict(request.labels),
                upload_time_us=request.upload_time_us or time.time_ns() // 1000,
            )
        except BrokenProcessPool:
            raise Unavailable(
                "the parser worker died (out of memory?); retry", retry_after_ms=WORKER_RETRY_MS
            ) from None

    async def _produce(self, topic: str, parsed: list[ParsedFile]) -> list[list[tuple[int, int]]]:
        """Every file's records at once; where each file's records landed."""
        records = [
            (file.parsed.upload_id, payload, events)
            for file in parsed
            for payload, events in file.records
        ]
        landed = iter(await self._records.produce_many(topic, records))
        return [[next(landed) for _ in file.records] for file in parsed]
