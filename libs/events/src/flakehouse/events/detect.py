"""Which of the two upload formats a file is, from its first bytes."""

from __future__ import annotations

import codecs
from typing import Final, Literal

from flakehouse.events.errors import EventError

Format = Literal["junit_xml", "json_lines"]

HEAD_BYTES: Final = 4096
"""How much of a file to pass to :func:`detect_format`: enough for any sane leading whitespace."""

_WHITESPACE: Final = b" \t\r\n"
# An XML document may be UTF-16 or UTF-32 (BOM or not); JSON lines are UTF-8 only.
_WIDE_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_WIDE_XML_STARTS: Final = (
    b"<\x00\x00\x00",
    b"\x00\x00\x00<",
    b"<\x00",
    b"\x00<",
)


def detect_format(head: bytes, *, filename: str = "<upload>") -> Format:
    """``"junit_xml"`` when the first significant character is ``<``, ``"json_lines"`` when it is
    ``{``, after a BOM and whitespace; EventError otherwise (also for an empty file)."""
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            text = head[len(bom) :].decode(encoding, errors="ignore").lstrip()
            if text.startswith("<"):
                return "junit_xml"
            raise _unknown(filename, bool(text))
    if head.startswith(_WIDE_XML_STARTS):
        return "junit_xml"
    body = head.removeprefix(codecs.BOM_UTF8).lstrip(_WHITESPACE)
    if body.startswith(b"<"):
        return "junit_xml"
    if body.startswith(b"{"):
        return "json_lines"
    raise _unknown(filename, bool(body))


def _unknown(filename: str, has_content: bool) -> EventError:
    if not has_content:
        return EventError(filename, "the file is empty or blank: not JUnit XML or JSON lines")
    return EventError(filename, "not JUnit XML or JSON lines")
