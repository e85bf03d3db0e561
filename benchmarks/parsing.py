"""Parsing benchmark: how long the JUnit parser takes to refuse or cut down hostile input, and the
peak memory (tracemalloc) of streaming, with the targets the tests once asserted. The tests in
libs/events check the answers; the figures live here, where a loaded machine cannot flake them.

`python -m benchmarks parsing`."""

from __future__ import annotations

import io
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks.hostile import (
    LazyReport,
    billion_laughs,
    huge_attribute,
    huge_text,
    many_cases,
    one_big_entity,
)
from benchmarks.junitgen import report
from flakehouse.events.batch import encode_batches
from flakehouse.events.errors import EventError
from flakehouse.events.junit import parse_junit, parse_junit_all
from flakehouse.events.model import Limits

UPLOAD = 1_700_000_000_000_000
MB = 1_000_000


def _drain(source: Any, limits: Limits = Limits()) -> int:  # noqa: B008
    """Events parsed; an EventError (a refusal) counts as done."""
    count = 0
    try:
        for _ in parse_junit(source, filename="b.xml", upload_time_us=UPLOAD, limits=limits):
            count += 1
    except EventError:
        pass
    return count


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _peak_mb(run: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


def parsing() -> None:
    attrs = " ".join(f'a{i}="{i}"' for i in range(1_000_000))
    refused = {
        "billion laughs (DTD), refused": billion_laughs(),
        "one 200 KB entity used 40,000 times, refused": one_big_entity(),
        "a 9 MiB attribute, refused": huge_attribute(9),
        "a 100 MiB attribute, refused": huge_attribute(100),
        "a 32 MiB comment, refused": b"<testsuite><testcase/><!--"
        + b"c" * (32 << 20)
        + b"--></testsuite>",
        "1,000,000 attributes in one tag, refused": (
            f"<testsuite><testcase {attrs}/></testsuite>".encode()
        ),
        "1,000,000 levels of nesting, refused": b"<testsuite>"
        + b"<x>" * 1_000_000
        + b"</x>" * 1_000_000
        + b"</testsuite>",
    }
    long_attr = b'<testsuite><testcase name="' + b"x" * (6 << 20) + b'"/></testsuite>'
    case = b'<testcase name="t"/>'

    def endless() -> int:
        source = LazyReport(iter([b"<testsuite>"]), endless=case * 1000)
        return _drain(source, Limits(max_file_bytes=300_000))

    print("parsing untrusted JUnit (time; the target the tests once asserted)")
    for what, run in [
        *((what, lambda data=data: _drain(io.BytesIO(data))) for what, data in refused.items()),
        (
            "a 6 MB attribute, truncated",
            lambda: parse_junit_all(io.BytesIO(long_attr), filename="b.xml", upload_time_us=UPLOAD),
        ),
        ("an endless report, stopped at max_file_bytes", endless),
    ]:
        print(f"  {what:48} {_seconds(run):6.3f} s   (target < 1 s)")

    print("parsing peak memory (tracemalloc)")
    text = _peak_mb(lambda: _drain(LazyReport(huge_text()), Limits(max_text_chars=1000)))
    print(f"  20 MB of system-out, max_text_chars=1000  {text:6.1f} MB   (target < 4 MB)")
    cases = _peak_mb(lambda: _drain(LazyReport(many_cases())))
    print(f"  30,000 testcases streamed                 {cases:6.1f} MB   (target < 4 MB)")

    data = report(7, 50_000)

    def streamed() -> None:
        events = parse_junit(io.BytesIO(data), filename="big.xml", upload_time_us=UPLOAD)
        for batch in encode_batches(events, dataset="ci", upload_id="u" * 32):
            batch.SerializeToString()

    def listed() -> None:
        every = parse_junit_all(io.BytesIO(data), filename="big.xml", upload_time_us=UPLOAD)
        list(encode_batches(every, dataset="ci", upload_id="u" * 32))

    stream_mb, list_mb = _peak_mb(streamed), _peak_mb(listed)
    print(
        f"  50,000 testcases to batches: streamed {stream_mb:.1f} MB, as a list {list_mb:.1f} MB"
        f" ({list_mb / stream_mb:.1f}x; target: streamed < 12 MB, the list > 3x)"
    )


if __name__ == "__main__":
    parsing()
