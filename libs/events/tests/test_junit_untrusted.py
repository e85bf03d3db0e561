"""Hostile JUnit input, each case run against the real parser: entity expansion, quadratic
blowups, external entities and DTDs pointing at a real local file, and every size bound. Each
attack must be refused quickly, with one error naming the file and the reason, and must leak
nothing."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from benchmarks.hostile import billion_laughs, huge_attribute, one_big_entity
from flakehouse.events.errors import EventError
from flakehouse.events.junit import parse_junit, parse_junit_all
from flakehouse.events.model import Event, Limits

UPLOAD = 1_700_000_000_000_000
FILENAME = "untrusted-report.xml"


def refuse(data: bytes, limits: Limits = Limits()) -> tuple[EventError, list[Event]]:  # noqa: B008
    """Streams ``data`` through the parser; the error and the events yielded before it. (How long
    hostile input takes to refuse: benchmarks/parsing.py.)"""
    events: list[Event] = []
    with pytest.raises(EventError) as caught:
        for event in parse_junit(
            io.BytesIO(data), filename=FILENAME, upload_time_us=UPLOAD, limits=limits
        ):
            events.append(event)
    err = caught.value
    assert err.filename == FILENAME
    assert str(err).startswith(f"{FILENAME}:")
    # One clear error: nothing chained that a log line might print.
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return err, events


# Entity expansion


def test_billion_laughs() -> None:
    err, events = refuse(billion_laughs())
    assert err.line == 2 and "DTD" in err.reason
    assert "lol" not in str(err) and not events


def test_quadratic_blowup_with_one_big_entity() -> None:
    data = one_big_entity()
    err, events = refuse(data)
    assert "DTD" in err.reason and "AAAA" not in str(err) and not events


@pytest.mark.parametrize("mib", [9, 100])
def test_quadratic_blowup_with_a_huge_attribute_and_no_entity(mib: int) -> None:
    # expat 2.5 scans an unfinished tag again on every read, so a huge attribute costs time
    # quadratic in its size: it must be refused, early, not slowly truncated (the reason says
    # which; how early: benchmarks/parsing.py).
    data = huge_attribute(mib)
    err, events = refuse(data)
    assert err.line == 2
    assert "larger than 8388608 bytes" in err.reason and "markup" in err.reason
    assert "xxxx" not in str(err) and not events


def test_a_huge_comment_is_refused_too() -> None:
    data = b"<testsuite><testcase/><!--" + b"c" * (32 << 20) + b"--></testsuite>"
    err, events = refuse(data)
    assert "markup" in err.reason
    assert len(events) <= 1  # the case before it may have been yielded already


def test_many_attributes_in_one_tag_are_bounded_by_the_same_limit() -> None:
    attrs = " ".join(f'a{i}="{i}"' for i in range(1_000_000))
    err, _ = refuse(f"<testsuite><testcase {attrs}/></testsuite>".encode())
    assert "markup" in err.reason


def test_a_long_attribute_within_the_limit_is_truncated() -> None:
    data = b'<testsuite><testcase name="' + b"x" * (6 << 20) + b'"/></testsuite>'
    (event,) = parse_junit_all(io.BytesIO(data), filename=FILENAME, upload_time_us=UPLOAD)
    assert len(str(event["name"])) == Limits().max_attribute_chars


def test_markup_limit_is_configurable() -> None:
    data = b'<testsuite><testcase name="' + b"x" * 300_000 + b'"/></testsuite>'
    err, _ = refuse(data, Limits(max_markup_bytes=200_000))
    assert "larger than 200000 bytes" in err.reason
    err, _ = refuse(
        b"<testsuite>\n<!--" + b"c" * 3000 + b"--></testsuite>", Limits(max_markup_bytes=1000)
    )
    assert err.line == 2 and "larger than 1000 bytes" in err.reason
    (event,) = parse_junit_all(
        io.BytesIO(data),
        filename=FILENAME,
        upload_time_us=UPLOAD,
        limits=Limits(max_markup_bytes=400_000),
    )
    assert str(event["name"]).endswith("[truncated, 300000 chars]")


# External entities and DTDs: a real local file that must never be read


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A local file with a unique secret marker in it; opening it by any Python-level route
    fails the test."""
    marker = f"SECRET-{uuid.uuid4().hex}"
    path = tmp_path / f"secret-{uuid.uuid4().hex}.txt"
    path.write_text(f"{marker}\n")
    opened: list[str] = []

    def guard(original: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, str | bytes | os.PathLike) and path.name in os.fsdecode(file):
                opened.append(os.fsdecode(file))
                raise AssertionError(f"the parser opened {file!r}")
            return original(file, *args, **kwargs)

        return guarded

    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(io, "open", guard(io.open))
    monkeypatch.setattr(os, "open", guard(os.open))
    yield path, marker
    assert not opened


def xxe_payloads(path: Path) -> dict[str, str]:
    url = path.as_uri()
    body = (
        '<testsuite name="s"><testcase name="&xxe;"><failure>&xxe;</failure></testcase></testsuite>'
    )
    return {
        "general external entity": (
            f'<?xml version="1.0"?>\n<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM "{url}">]>\n{body}'
        ),
        "plain path": (
            f'<?xml version="1.0"?>\n<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM "{path}">]>\n{body}'
        ),
        "parameter entity": (
            f'<?xml version="1.0"?>\n<!DOCTYPE testsuite [<!ENTITY % ext SYSTEM "{url}"> %ext;]>\n'
            '<testsuite><testcase name="a"/></testsuite>'
        ),
        "parameter entity defining an entity": (
            '<?xml version="1.0"?>\n<!DOCTYPE testsuite [\n'
            f'<!ENTITY % file SYSTEM "{url}">\n'
            "<!ENTITY % wrap \"<!ENTITY xxe '%file;'>\">\n%wrap;\n]>\n" + body
        ),
        "external DTD": (
            f'<?xml version="1.0"?>\n<!DOCTYPE testsuite SYSTEM "{url}">\n'
            '<testsuite><testcase name="a"/></testsuite>'
        ),
        "public external DTD": (
            f'<?xml version="1.0"?>\n<!DOCTYPE testsuite PUBLIC "-//Evil//DTD X//EN" "{url}">\n'
            '<testsuite><testcase name="a"/></testsuite>'
        ),
        "unparsed entity": (
            f'<?xml version="1.0"?>\n<!DOCTYPE testsuite [<!NOTATION n SYSTEM "x">'
            f'<!ENTITY xxe SYSTEM "{url}" NDATA n>]>\n'
            '<testsuite><testcase name="a"/></testsuite>'
        ),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "general external entity",
        "plain path",
        "parameter entity",
        "parameter entity defining an entity",
        "external DTD",
        "public external DTD",
        "unparsed entity",
    ],
)
def test_xxe_never_reads_the_file(kind: str, secret: tuple[Path, str]) -> None:
    path, marker = secret
    data = xxe_payloads(path)[kind].encode()
    err, events = refuse(data)
    assert err.line == 2 and err.reason == "a DTD (<!DOCTYPE>) is not allowed"
    for text in (str(err), repr(err), err.reason, str(events)):
        assert marker not in text and path.name not in text
    assert not events
    # The error crosses a process boundary (the service parses in a worker) unchanged.
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.filename, copy.reason, copy.line, str(copy)) == (
        err.filename,
        err.reason,
        err.line,
        str(err),
    )


def test_an_entity_reference_without_a_dtd_reads_nothing(secret: tuple[Path, str]) -> None:
    _, marker = secret
    err, events = refuse(b'<testsuite>\n<testcase name="&xxe;"/></testsuite>')
    assert err.line == 2 and "undefined entity" in err.reason
    assert marker not in str(err) and not events


# Nesting, text and fields


def test_deep_nesting_is_refused_at_the_limit() -> None:
    data = b"<testsuite>" + b"<x>" * 1_000_000 + b"</x>" * 1_000_000 + b"</testsuite>"
    err, _ = refuse(data)
    assert "nested deeper than 64 levels" in err.reason
    err, _ = refuse(b"<testsuite>" * 11 + b"</testsuite>" * 11, Limits(max_depth=10))
    assert "nested deeper than 10 levels" in err.reason


@pytest.mark.parametrize("limit", [50, 1000, 20_000])
def test_text_limits_are_configurable(limit: int) -> None:
    # Each truncation size is its own Limits field and applies to its own fields only.
    long = "z" * 50_000
    data = (
        f'<testsuite><testcase name="{long}" classname="{long}">'
        f'<error message="{long}" type="{long}">{long}</error>'
        f"<system-out>{long}</system-out><system-err>{long}</system-err>"
        f'<properties><property name="p" value="{long}"/></properties>'
        "</testcase></testsuite>"
    ).encode()
    limits = Limits(
        max_attribute_chars=limit, max_message_chars=limit + 7, max_text_chars=limit + 3
    )
    (event,) = parse_junit_all(
        io.BytesIO(data), filename=FILENAME, upload_time_us=UPLOAD, limits=limits
    )
    marker = "… [truncated, 50000 chars]"
    for field, size in [
        ("name", limit),
        ("classname", limit),
        ("type", limit),
        ("prop.p", limit),
        ("message", limit + 7),
        ("stack", limit + 3),
        ("stdout", limit + 3),
        ("stderr", limit + 3),
    ]:
        value = str(event[field])
        assert len(value) == size, field
        if size > len(marker):
            assert value.endswith(marker), field


def test_fields_per_event_limit_counts_case_and_suite_properties() -> None:
    suite = "".join(f'<property name="s{i}" value="v"/>' for i in range(100))
    case = "".join(f'<property name="c{i}" value="v"/>' for i in range(100))
    data = (
        f"<testsuite><properties>{suite}</properties>\n"
        f"<testcase><properties>{case}</properties></testcase></testsuite>"
    ).encode()
    err, _ = refuse(data, Limits(max_fields_per_event=150))
    assert err.line == 2 and "204 fields, more than the limit of 150" in err.reason
    (event,) = parse_junit_all(
        io.BytesIO(data),
        filename=FILENAME,
        upload_time_us=UPLOAD,
        limits=Limits(max_fields_per_event=204),
    )
    assert len(event) == 204


class Endless(io.RawIOBase):
    """A report that never ends, produced as it is read."""

    def __init__(self) -> None:
        self.buffer = b"<testsuite>"

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = 1 << 16 if size is None or size < 0 else size
        if len(self.buffer) < want:
            case = b'<testcase name="t"/>'
            self.buffer += case * (want // len(case) + 1)
        data, self.buffer = self.buffer[:want], self.buffer[want:]
        return data


def test_file_size_limit_is_checked_while_streaming() -> None:
    # The source never ends: only the limit, checked while streaming, ends the parse.
    with pytest.raises(EventError) as caught:
        for _ in parse_junit(
            Endless(),  # type: ignore[arg-type]
            filename=FILENAME,
            upload_time_us=UPLOAD,
            limits=Limits(max_file_bytes=300_000),
        ):
            pass
    assert caught.value.reason == "file is larger than 300000 bytes"


# Errors from a worker process


def _parse_in_worker(data: bytes) -> list[Event]:
    return parse_junit_all(io.BytesIO(data), filename=FILENAME, upload_time_us=UPLOAD)


@pytest.mark.processes
def test_event_error_survives_a_process_pool() -> None:
    with ProcessPoolExecutor(1) as pool:
        good = pool.submit(_parse_in_worker, b'<testsuite><testcase name="a"/></testsuite>')
        bad = pool.submit(_parse_in_worker, billion_laughs())
        assert [e["name"] for e in good.result()] == ["a"]
        with pytest.raises(EventError) as caught:
            bad.result()
    err = caught.value
    assert (err.filename, err.line, err.reason) == (
        FILENAME,
        2,
        "a DTD (<!DOCTYPE>) is not allowed",
    )
    assert str(err) == f"{FILENAME}:2: a DTD (<!DOCTYPE>) is not allowed"
