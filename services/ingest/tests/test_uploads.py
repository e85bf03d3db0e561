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
from flakehouse.ingest.uploads import (
    ParsedUpload,
    RecordReader,
    join_records,
    json_parts,
    parse_part_to_records,
    parse_to_records,
)

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


def records_of(path: Path) -> list[events_pb2.EventBatch]:
    reader = RecordReader(path)
    try:
        return [events_pb2.EventBatch.FromString(payload) for payload, _ in reader.next_many(10**6)]
    finally:
        reader.close()


def ids_and_events(batches: list[events_pb2.EventBatch]) -> list[tuple[int, dict[str, object]]]:
    return [
        (event_id, event)
        for batch in batches
        for event_id, event in zip(batch.event_ids, decode_batch(batch), strict=True)
    ]


def in_parts(tmp_path: Path, data: bytes, parts: int) -> list[ParsedUpload | EventError]:
    spool = tmp_path / "upload"
    spool.write_bytes(data)
    results: list[ParsedUpload | EventError] = []
    paths = []
    for index, (start, end) in enumerate(json_parts(spool, len(data), parts)):
        paths.append(tmp_path / f"records.{index}")
        try:
            results.append(
                parse_part_to_records(
                    spool,
                    paths[-1],
                    start=start,
                    end=end,
                    dataset="ci",
                    filename="e.jsonl",
                    labels={"branch": "main"},
                    upload_id="u1",
                    upload_time_us=5,
                    progress_path=tmp_path / f"progress.{index}",
                )
            )
        except EventError as exc:
            results.append(exc)
    if not any(isinstance(r, EventError) for r in results):
        join_records(paths, tmp_path / "joined")
    return results


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_a_file_parsed_in_parts_gives_the_records_of_one_parse(tmp_path: Path, parts: int) -> None:
    # A BOM, blank and whitespace lines, CRLF: what moves line numbers and event positions.
    body = b"".join(
        b'{"name": "t%d", "status": "%s", "duration": %d}%s'
        % (i, b"failed" if i % 7 == 0 else b"passed", i, b"\r\n" if i % 5 else b"\n")
        + (b"\n  \n" if i % 11 == 0 else b"")
        for i in range(3000)
    )
    data = b"\xef\xbb\xbf" + body
    whole = tmp_path / "whole"
    whole.mkdir()
    by_status, batches, events = parse(whole, data)
    results = in_parts(tmp_path, data, parts)
    assert len(results) == parts
    assert sum(r.events for r in results if isinstance(r, ParsedUpload)) == events == 3000
    assert (
        sum((Counter(r.by_status) for r in results if isinstance(r, ParsedUpload)), Counter())
        == by_status
    )
    assert ids_and_events(records_of(tmp_path / "joined")) == ids_and_events(batches)


def test_an_error_in_a_later_part_names_the_line_of_the_whole_file(tmp_path: Path) -> None:
    lines = [b'{"name": "t%d"}\n' % i for i in range(2000)]
    lines[1500] = b'{"name": \n'
    data = b"\n" + b"".join(lines)  # a blank first line: line numbers are not positions
    results = in_parts(tmp_path, data, 2)
    assert isinstance(results[0], ParsedUpload)
    assert isinstance(results[1], EventError)
    with pytest.raises(EventError) as whole:
        parse_json_lines_all(io.BytesIO(data), filename="e.jsonl", upload_time_us=1)
    assert str(results[1]) == str(whole.value)
    assert str(whole.value).startswith("e.jsonl:1502: ")
