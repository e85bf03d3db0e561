"""From a spooled file to its record file, without a service: the records hold the parsed events,
and the count by status is the events'."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from flakehouse.common.v1 import events_pb2
from flakehouse.events.batch import decode_batch
from flakehouse.events.errors import EventError
from flakehouse.events.jsonlines import parse_json_lines_all
from flakehouse.ingest.uploads import RecordReader, parse_to_records

LINES = (
    b'{"timestamp": 1793534400, "name": "a", "status": "passed"}\n'
    b'{"name": "b", "status": "failed", "message": "boom"}\n'
    b'{"name": "c"}\n'
    b'{"name": "d", "status": 1}\n'
    b'{"name": "e", "status": true}\n'
    b'{"name": "f", "status": "passed"}\n'
    b'{"name": "g", "status": 1.5}\n'
)


def parse(tmp_path: Path, data: bytes) -> tuple[Counter[str], list[events_pb2.EventBatch], int]:
    spool = tmp_path / "upload"
    spool.write_bytes(data)
    parsed = parse_to_records(
        spool,
        tmp_path / "records",
        dataset="ci",
        filename="e.jsonl",
        declared_format=None,
        labels={"branch": "main"},
        upload_id="u1",
        content_digest=b"\0" * 32,
        upload_time_us=5,
    )
    reader = RecordReader(tmp_path / "records")
    try:
        records = reader.next_many(1000)
    finally:
        reader.close()
    batches = [events_pb2.EventBatch.FromString(payload) for payload, _ in records]
    assert [count for _, count in records] == [b.row_count for b in batches]
    assert (parsed.records, parsed.events) == (len(batches), sum(b.row_count for b in batches))
    return Counter(parsed.by_status), batches, parsed.events


def test_records_hold_the_events_and_statuses_are_counted(tmp_path: Path) -> None:
    by_status, batches, events = parse(tmp_path, LINES)
    expected = parse_json_lines_all(
        io.BytesIO(LINES), filename="e.jsonl", upload_time_us=5, labels={"branch": "main"}
    )
    assert [event for batch in batches for event in decode_batch(batch)] == expected
    assert events == 7
    assert by_status == {"passed": 2, "failed": 1, "1": 1, "True": 1, "1.5": 1}


def test_statuses_are_counted_across_batches(tmp_path: Path) -> None:
    # Wide events: several batches, closed by size.
    line = b'{"status": "%s", "stack": "%s"}\n'
    data = b"".join(
        line % (b"failed" if i % 3 == 0 else b"passed", b"x" * 4000) for i in range(600)
    )
    by_status, batches, events = parse(tmp_path, data)
    assert len(batches) > 1 and events == 600
    assert by_status == {"failed": 200, "passed": 400}


def test_a_bad_line_is_an_event_error(tmp_path: Path) -> None:
    with pytest.raises(EventError, match=r"e\.jsonl:2: field 'a' appears twice"):
        parse(tmp_path, b'{"a": 1}\n{"a": 1, "a": 2}\n')
