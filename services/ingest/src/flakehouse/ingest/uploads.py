"""From an uploaded file to encoded Kafka records: spool, recognise, parse completely, encode.
No gRPC and no Kafka here. A file is parsed to the end before anything is returned, so a bad
file writes nothing."""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

from flakehouse.events.batch import encode_batches, upload_id_for
from flakehouse.events.detect import detect_format
from flakehouse.events.errors import EventError
from flakehouse.events.jsonlines import parse_json_lines
from flakehouse.events.junit import parse_junit
from flakehouse.events.model import Event

UPLOAD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
JUNIT_XML = "junit_xml"
JSON_LINES = "json_lines"
HEAD_BYTES = 512


class UploadTooLarge(ValueError):
    pass


@dataclass
class Spool:
    """An upload's bytes, in memory up to a size and on disk beyond, with their digest."""

    file: IO[bytes]
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    @classmethod
    def create(cls, memory_bytes: int) -> Spool:
        return cls(tempfile.SpooledTemporaryFile(max_size=memory_bytes))

    def write(self, chunk: bytes, max_bytes: int) -> None:
        self.size += len(chunk)
        if self.size > max_bytes:
            raise UploadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
        self.digest.update(chunk)
        self.file.write(chunk)

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class ParsedUpload:
    format: str
    upload_id: str
    records: list[bytes]
    events: int
    by_status: dict[str, int]


def recognise(spool: Spool, declared: str | None, filename: str) -> str:
    """The declared format, or the one the first bytes show."""
    if declared:
        return declared
    spool.file.seek(0)
    head = spool.file.read(HEAD_BYTES)
    if not head:
        raise EventError(filename, "the file is empty")
    return detect_format(head, filename=filename)


def parse_upload(
    spool: Spool,
    *,
    dataset: str,
    filename: str,
    declared_format: str | None,
    labels: Mapping[str, str],
    upload_id: str,
    upload_time_us: int,
) -> ParsedUpload:
    """Parses the whole file and encodes its events; raises EventError for a bad file."""
    fmt = recognise(spool, declared_format, filename)
    spool.file.seek(0)
    parse = parse_junit if fmt == JUNIT_XML else parse_json_lines
    events: list[Event] = list(
        parse(
            cast(BinaryIO, spool.file),
            filename=filename,
            upload_time_us=upload_time_us,
            labels=labels,
        )
    )
    upload_id = upload_id or upload_id_for(dataset, labels, spool.digest.digest())
    records = [
        batch.SerializeToString()
        for batch in encode_batches(events, dataset=dataset, upload_id=upload_id)
    ]
    by_status = Counter(str(e["status"]) for e in events if "status" in e)
    return ParsedUpload(fmt, upload_id, records, len(events), dict(by_status))
