"""From an uploaded file to encoded Kafka records, with bounded memory and nothing written for
a bad file.

The received bytes are spooled to disk. A worker process then parses the spool as a stream and
encodes events into EventBatch records, appending each to a record file on disk, so no step ever
holds the whole upload in memory. Only once the whole file parsed does the service produce the
records, reading them back one by one. No gRPC and no Kafka here."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from flakehouse.common.v1 import events_pb2
from flakehouse.events.batch import column_values, encode_batches, upload_id_for
from flakehouse.events.detect import HEAD_BYTES, detect_format
from flakehouse.events.errors import EventError
from flakehouse.events.jsonlines import count_json_lines, parse_json_lines
from flakehouse.events.junit import parse_junit

UPLOAD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
JUNIT_XML = "junit_xml"
JSON_LINES = "json_lines"
RECORD_HEADER = struct.Struct("<II")  # record length, events in the record
EVENTS_SO_FAR = struct.Struct("<Q")  # the parser's progress file
JOIN_BLOCK = 4 * 1024 * 1024
STATUS = "status"


class UploadTooLarge(ValueError):
    pass


@dataclass
class Spool:
    """An upload's bytes on disk, with their size and digest. ``keep`` is a file that lives and
    goes with the spool (a resumable upload's header); the record file and the parse progress
    are named per spool object, so two streams of one resumable upload never share them."""

    path: Path
    out: BinaryIO | None
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    keep: Path | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    parts: int = 0

    @classmethod
    def create(cls, directory: str | None) -> Spool:
        fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
        return cls(Path(name), os.fdopen(fd, "wb"))

    def write(self, chunk: bytes, max_bytes: int) -> None:
        if self.size + len(chunk) > max_bytes:
            raise UploadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
        assert self.out is not None, "write after finish"
        self.out.write(chunk)
        self.out.flush()  # what is acknowledged is in the file, should this process die
        self.size += len(chunk)
        self.digest.update(chunk)

    def finish(self) -> None:
        """All bytes received: flushed and closed, ready for the parser to open by path."""
        if self.out is not None:
            self.out.close()

    @property
    def records_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}.{self.token}.records")

    @property
    def progress_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}.{self.token}.progress")

    def part(self, index: int) -> tuple[Path, Path]:
        """The record and progress files of one part of a file parsed in parts."""
        self.parts = max(self.parts, index + 1)
        return (
            self.records_path.with_name(f"{self.records_path.name}.{index}"),
            self.progress_path.with_name(f"{self.progress_path.name}.{index}"),
        )

    def parsed_events(self) -> int:
        """Events the parser (or parsers, of a file parsed in parts) reported so far."""
        paths = [self.part(i)[1] for i in range(self.parts)] or [self.progress_path]
        return sum(map(_events_so_far, paths))

    def release(self) -> None:
        """Removes what this stream made, keeping the received bytes (a resumable upload that
        another stream may continue)."""
        if self.out is not None:
            self.out.close()
        for records, progress in [self.part(i) for i in range(self.parts)]:
            records.unlink(missing_ok=True)
            progress.unlink(missing_ok=True)
        self.records_path.unlink(missing_ok=True)
        self.progress_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Removes the spool and everything that goes with it."""
        self.release()
        self.path.unlink(missing_ok=True)
        if self.keep is not None:
            self.keep.unlink(missing_ok=True)


@dataclass(frozen=True)
class ParsedUpload:
    """What a parse produced: the record file's contents are described, not held."""

    format: str
    upload_id: str
    records: int
    events: int
    by_status: dict[str, int]


def recognise(path: Path, declared: str | None, filename: str) -> str:
    """The declared format, or the one the first bytes show."""
    if declared:
        return declared
    with path.open("rb") as source:
        return format_of(source.read(HEAD_BYTES), filename)


def format_of(head: bytes, filename: str) -> str:
    """The format the first bytes of a file show; EventError for an empty file."""
    if not head:
        raise EventError(filename, "the file is empty")
    return detect_format(head, filename=filename)


def parse_to_records(
    spool_path: Path,
    records_path: Path,
    *,
    dataset: str,
    filename: str,
    declared_format: str | None,
    labels: Mapping[str, str],
    upload_id: str,
    content_digest: bytes,
    upload_time_us: int,
    progress_path: Path | None = None,
) -> ParsedUpload:
    """Parses the spooled file as a stream and writes its encoded records to records_path.
    Raises EventError for a bad file (the caller then discards the record file). Runs in a
    worker process: arguments and result are plain, picklable values. The number of events
    parsed so far is rewritten in progress_path after each record."""
    fmt = recognise(spool_path, declared_format, filename)
    upload_id = upload_id or upload_id_for(dataset, labels, content_digest)
    parse = parse_junit if fmt == JUNIT_XML else parse_json_lines
    with spool_path.open("rb") as source:
        stream = parse(source, filename=filename, upload_time_us=upload_time_us, labels=labels)
        records, events, by_status = _write_records(
            encode_batches(stream, dataset=dataset, upload_id=upload_id),
            records_path,
            progress_path,
        )
    return ParsedUpload(fmt, upload_id, records, events, by_status)


def parse_part_to_records(
    spool_path: Path,
    records_path: Path,
    *,
    start: int,
    end: int,
    dataset: str,
    filename: str,
    labels: Mapping[str, str],
    upload_id: str,
    upload_time_us: int,
    progress_path: Path,
) -> ParsedUpload:
    """parse_to_records for the bytes [start, end) of a JSON lines file, both at the start of
    a line: its events keep the ids and its errors the line numbers they have in the whole
    file, because this worker first counts the lines and events before `start` (a fast scan).
    Parts parsed at once by several workers, their record files joined in order, are the
    whole file's records."""
    with spool_path.open("rb") as source:
        lines, before = count_json_lines(source, start) if start else (0, 0)
        source.seek(start)
        stream = parse_json_lines(
            _Part(source, end - start),  # type: ignore[arg-type]
            filename=filename,
            upload_time_us=upload_time_us,
            labels=labels,
            after=(lines, start),
        )
        batches = encode_batches(
            stream, dataset=dataset, upload_id=upload_id, first_position=before
        )
        records, events, by_status = _write_records(batches, records_path, progress_path)
    return ParsedUpload(JSON_LINES, upload_id, records, events, by_status)


def json_parts(path: Path, size: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) byte ranges that cut a JSON lines file into about `parts` equal parts, each
    starting at a line."""
    cuts = [0]
    with path.open("rb") as source:
        for k in range(1, parts):
            source.seek(max(size * k // parts, cuts[-1]))
            source.readline()  # to the start of the next line
            if (cut := source.tell()) < size and cut > cuts[-1]:
                cuts.append(cut)
    return list(zip(cuts, [*cuts[1:], size], strict=True))


def join_records(parts: list[Path], records_path: Path) -> None:
    """The parts' record files, in order, as one record file."""
    with records_path.open("wb") as out:
        for part in parts:
            with part.open("rb") as records:
                shutil.copyfileobj(records, out, JOIN_BLOCK)


class _Part:
    """`size` bytes of a file from where it stands, read by lines (all the parser uses)."""

    def __init__(self, source: BinaryIO, size: int) -> None:
        self._source = source
        self._left = size

    def readline(self, limit: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        line = self._source.readline(self._left if limit < 0 else min(limit, self._left))
        self._left -= len(line)
        return line


def _write_records(
    batches: Iterator[events_pb2.EventBatch], records_path: Path, progress_path: Path | None
) -> tuple[int, int, dict[str, int]]:
    """Writes the batches as a record file; (records, events, events by status). The number
    of events so far is rewritten in progress_path after each record."""
    by_status: Counter[str] = Counter()
    records = events = 0
    progress = os.open(progress_path, os.O_WRONLY | os.O_CREAT, 0o600) if progress_path else None
    try:
        with records_path.open("wb") as out:
            for payload, batch_events in encoded(batches, by_status):
                out.write(RECORD_HEADER.pack(len(payload), batch_events))
                out.write(payload)
                records += 1
                events += batch_events
                if progress is not None:
                    os.pwrite(progress, EVENTS_SO_FAR.pack(events), 0)
    finally:
        if progress is not None:
            os.close(progress)
    return records, events, dict(by_status)


def _events_so_far(progress_path: Path) -> int:
    try:
        data = progress_path.read_bytes()[: EVENTS_SO_FAR.size]
        events: int = EVENTS_SO_FAR.unpack(data)[0]
        return events
    except (FileNotFoundError, struct.error):
        return 0


def encoded(
    batches: Iterator[events_pb2.EventBatch], by_status: Counter[str]
) -> Iterator[tuple[bytes, int]]:
    """Each batch as a Kafka record's payload, with its number of events; adds the batches'
    events to the count by status as they go."""
    for batch in batches:
        _count_statuses(batch, by_status)
        yield batch.SerializeToString(), batch.row_count


def _count_statuses(batch: events_pb2.EventBatch, by_status: Counter[str]) -> None:
    """Adds the batch's events to the count by status, as a string whatever its type. Counted
    from the batch's columns, not event by event: a column's values go to Counter at C speed."""
    for column in batch.columns:
        if column.name == STATUS:
            by_status.update(map(str, column_values(column)))


class RecordReader:
    """Reads back a record file, a few records at a time (blocking: call off the loop)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")

    def next_many(self, limit: int) -> list[tuple[bytes, int]]:
        records = []
        for _ in range(limit):
            header = self._file.read(RECORD_HEADER.size)
            if not header:
                break
            length, events = RECORD_HEADER.unpack(header)
            records.append((self._file.read(length), events))
        return records

    def close(self) -> None:
        self._file.close()
