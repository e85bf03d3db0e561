"""Telling JUnit XML from JSON lines by the first bytes."""

from __future__ import annotations

import pytest

from flakehouse.events.detect import detect_format
from flakehouse.events.errors import EventError


@pytest.mark.parametrize(
    "head",
    [
        b'<?xml version="1.0"?><testsuites/>',
        b"<testsuite>",
        b"\xef\xbb\xbf<?xml",
        b"\n\n  \t\r\n<testsuites>",
        b"\xef\xbb\xbf  \n<testsuite>",
        '<?xml version="1.0" encoding="UTF-16"?>'.encode("utf-16"),  # BOM + UTF-16
        "<testsuite>".encode("utf-16-le"),  # no BOM
        "<testsuite>".encode("utf-16-be"),
        "\n<testsuite>".encode("utf-32"),
    ],
)
def test_xml(head: bytes) -> None:
    assert detect_format(head) == "junit_xml"


@pytest.mark.parametrize(
    "head",
    [b'{"a": 1}\n', b'\n\n{"a"', b'\xef\xbb\xbf{"timestamp": 1}', b"  {"],
)
def test_json_lines(head: bytes) -> None:
    assert detect_format(head) == "json_lines"


@pytest.mark.parametrize(
    "head",
    [b"hello", b"[1, 2]", b"PK\x03\x04", b"\x89PNG", "{".encode("utf-16")],
)
def test_anything_else_is_rejected(head: bytes) -> None:
    with pytest.raises(EventError) as caught:
        detect_format(head, filename="upload.bin")
    assert str(caught.value) == "upload.bin: not JUnit XML or JSON lines"


@pytest.mark.parametrize("head", [b"", b"   \n\t", b"\xef\xbb\xbf"])
def test_empty_is_rejected(head: bytes) -> None:
    with pytest.raises(EventError, match="empty"):
        detect_format(head)
