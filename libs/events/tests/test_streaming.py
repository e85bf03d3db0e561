"""parse_junit -> encode_batches is the ingest service's pipeline: it must stream, holding about
one batch, never the whole report's events."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

from flakehouse.events.batch import MAX_ROWS, decode_batch, encode_batches
from flakehouse.events.junit import parse_junit, parse_junit_all
from flakehouse.events.model import Event

UPLOAD = 1_700_000_000_000_000
CASES = 50_000


def report(cases: int, seed: int = 7) -> bytes:
    """A generated report shaped like a big real one: many suites with timestamps, hostnames
    and some properties, a few percent failures, errors and skips."""
    rng = random.Random(seed)
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n']
    written = 0
    while written < cases:
        suite = f"com.example.module{rng.randrange(40)}.Suite{rng.randrange(300)}Test"
        out.append(
            f'  <testsuite name="{suite}" timestamp="2026-11-0{rng.randrange(1, 9)}T10:00:00" '
            'hostname="ci-runner-3" tests="100">\n'
        )
        if rng.random() < 0.3:
            out.append('    <properties><property name="os" value="linux"/></properties>\n')
        for _ in range(min(100, cases - written)):
            roll = rng.random()
            body = ""
            if roll < 0.03:
                body = (
                    '<failure message="expected 1 but was 2" type="AssertionError">'
                    "at Foo.bar(Foo.java:12)</failure>"
                )
            elif roll < 0.035:
                body = '<error message="boom" type="RuntimeException"/>'
            elif roll < 0.06:
                body = '<skipped message="not on linux"/>'
            out.append(
                f'    <testcase classname="{suite}" name="test_{rng.randrange(20_000)}" '
                f'time="{rng.lognormvariate(-3, 1.5):.4f}">{body}</testcase>\n'
            )
            written += 1
        out.append("  </testsuite>\n")
    out.append("</testsuites>\n")
    return "".join(out).encode()


def test_streamed_pipeline_encodes_the_same_bytes_as_the_list_based_one() -> None:
    # Their peak memory (about 5 MB streamed against 25 MB for the list, which grows with the
    # report) is measured in benchmarks/parsing.py.
    data = report(CASES)
    rows = 0
    size = 0
    events = parse_junit(io.BytesIO(data), filename="big.xml", upload_time_us=UPLOAD)
    for batch in encode_batches(events, dataset="ci", upload_id="u" * 32):
        rows += batch.row_count
        size += len(batch.SerializeToString())
    assert rows == CASES

    every_event = parse_junit_all(io.BytesIO(data), filename="big.xml", upload_time_us=UPLOAD)
    batches = list(encode_batches(every_event, dataset="ci", upload_id="u" * 32))
    assert sum(b.row_count for b in batches) == CASES
    assert sum(len(b.SerializeToString()) for b in batches) == size


class CountingEvents:
    """An iterator of events that counts how many have been taken."""

    def __init__(self, events: Iterator[Event]) -> None:
        self.events = events
        self.taken = 0

    def __iter__(self) -> CountingEvents:
        return self

    def __next__(self) -> Event:
        event = next(self.events)
        self.taken += 1
        return event


def test_encode_batches_pulls_about_one_batch_at_a_time() -> None:
    rows = 1000
    data = report(3 * rows + 10)
    counting = CountingEvents(
        parse_junit(io.BytesIO(data), filename="big.xml", upload_time_us=UPLOAD)
    )
    batches = encode_batches(counting, dataset="ci", upload_id="u", max_rows=rows)
    first = next(batches)
    assert first.row_count == rows
    # A full batch is handed out once the event after it has been read (and is known to be
    # encodable), not after the whole input.
    assert counting.taken == rows + 1
    rest = list(batches)
    assert [b.row_count for b in rest] == [rows, rows, 10]
    assert counting.taken == 3 * rows + 10


def test_batches_closed_by_size_stream_too() -> None:
    # Big events: batches are closed by max_bytes long before max_rows.
    data = report(20_000)
    counting = CountingEvents(
        parse_junit(io.BytesIO(data), filename="big.xml", upload_time_us=UPLOAD)
    )
    batches = encode_batches(counting, dataset="ci", upload_id="u", max_bytes=100_000)
    first = next(batches)
    assert first.ByteSize() <= 100_000
    assert first.row_count < MAX_ROWS and counting.taken <= MAX_ROWS + 1
    assert first.row_count + sum(b.row_count for b in batches) == 20_000


def test_streamed_and_listed_pipelines_give_the_same_batches() -> None:
    data = report(12_345)
    events = parse_junit_all(io.BytesIO(data), filename="r.xml", upload_time_us=UPLOAD)
    listed = [
        b.SerializeToString()
        for b in encode_batches(events, dataset="ci", upload_id="u", max_rows=1000)
    ]
    streamed = [
        b.SerializeToString()
        for b in encode_batches(
            parse_junit(io.BytesIO(data), filename="r.xml", upload_time_us=UPLOAD),
            dataset="ci",
            upload_id="u",
            max_rows=1000,
        )
    ]
    assert streamed == listed and len(listed) == 13
    decoded = [
        event
        for batch in encode_batches(events, dataset="ci", upload_id="u", max_rows=1000)
        for event in decode_batch(batch)
    ]
    assert decoded == events
