"""The files of one UploadFiles call, parsed in one worker call: each file on its own (its
format, its upload id, its events, or the error that refuses it alone), its records held in
memory, which the call's bounded size allows. The same file gets the same upload id, events and
errors here as through a streamed upload. No gRPC and no Kafka here."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from flakehouse.events.batch import encode_batches, upload_id_for
from flakehouse.events.detect import HEAD_BYTES
from flakehouse.events.errors import EventError
from flakehouse.events.jsonlines import parse_json_lines
from flakehouse.events.junit import parse_junit
from flakehouse.ingest.uploads import JUNIT_XML, ParsedUpload, encoded, format_of


@dataclass(frozen=True)
class ParsedFile:
    parsed: ParsedUpload
    records: list[tuple[bytes, int]]
    """Each Kafka record's payload and number of events, in order."""


@dataclass(frozen=True)
class RefusedFile:
    message: str
    """Names the file (and the line), as a streamed upload's error does."""


def parse_files(
    files: list[tuple[str, bytes, str]],
    *,
    dataset: str,
    declared_format: str | None,
    labels: Mapping[str, str],
    upload_time_us: int,
) -> list[ParsedFile | RefusedFile]:
    """(filename, content, upload_id) of each file → its records or its refusal, in order.
    Runs in a worker process: arguments and results are plain, picklable values."""
    outcomes: list[ParsedFile | RefusedFile] = []
    for filename, content, upload_id in files:
        try:
            outcomes.append(
                _parse_file(
                    filename, content, upload_id, dataset, declared_format, labels, upload_time_us
                )
            )
        except EventError as exc:
            outcomes.append(RefusedFile(str(exc)))
    return outcomes


def _parse_file(
    filename: str,
    content: bytes,
    upload_id: str,
    dataset: str,
    declared_format: str | None,
    labels: Mapping[str, str],
    upload_time_us: int,
) -> ParsedFile:
    fmt = declared_format or format_of(content[:HEAD_BYTES], filename)
    upload_id = upload_id or upload_id_for(dataset, labels, hashlib.sha256(content).digest())
    parse = parse_junit if fmt == JUNIT_XML else parse_json_lines
    stream = parse(
        io.BytesIO(content), filename=filename, upload_time_us=upload_time_us, labels=labels
    )
    by_status: Counter[str] = Counter()
    records = list(encoded(encode_batches(stream, dataset=dataset, upload_id=upload_id), by_status))
    events = sum(count for _, count in records)
    return ParsedFile(ParsedUpload(fmt, upload_id, len(records), events, dict(by_status)), records)
