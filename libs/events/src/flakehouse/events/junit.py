"""JUnit XML to events, schema v1 (DESIGN.md §2; the choices it leaves open are in
``libs/events/JUNIT.md``): a guarded, streamed read of untrusted input, one event per testcase."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, BinaryIO, Final
from xml.parsers import expat

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from flakehouse.events.errors import EventError
from flakehouse.events.junit_elements import ElementHandler
from flakehouse.events.model import Event, Limits, check_parse_arguments

_CHUNK: Final = 64 * 1024
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def parse_junit(
    source: BinaryIO,
    *,
    filename: str,
    upload_time_us: int,
    labels: Mapping[str, str] = _NO_LABELS,
    limits: Limits = Limits(),  # noqa: B008 (frozen, so sharing the default is safe)
) -> Iterator[Event]:
    """Events of a JUnit XML report, one per testcase, yielded as the stream is read.

    Raises ValueError at once for a bad label, and EventError (while iterating) for input that
    is not a well-formed, bounded JUnit report. An error further down the file arrives after
    some events: a caller that must write nothing from a bad file uses :func:`parse_junit_all`,
    or consumes the whole iterator before writing anything."""
    checked = check_parse_arguments(labels, upload_time_us)
    return _parse(source, filename, upload_time_us, checked, limits)


def parse_junit_all(
    source: BinaryIO,
    *,
    filename: str,
    upload_time_us: int,
    labels: Mapping[str, str] = _NO_LABELS,
    limits: Limits = Limits(),  # noqa: B008
) -> list[Event]:
    """Every event of the report, or EventError before any is returned: for callers that must
    write nothing from a bad file."""
    return list(
        parse_junit(
            source, filename=filename, upload_time_us=upload_time_us, labels=labels, limits=limits
        )
    )


def _parse(
    source: BinaryIO, filename: str, upload_time_us: int, labels: dict[str, str], limits: Limits
) -> Iterator[Event]:
    handler = ElementHandler(filename, upload_time_us, labels, limits)
    parser = _expat_parser(handler)
    handler.expat = parser
    parse = parser.Parse
    read = source.read
    size = 0
    chunk_size = want = min(_CHUNK, limits.max_markup_bytes)
    while chunk := read(want):
        size += len(chunk)
        if size > limits.max_file_bytes:
            raise EventError(filename, f"file is larger than {limits.max_file_bytes} bytes")
        _run(parse, chunk, False, handler)
        # Bytes expat holds because they are an unfinished piece of markup (a start tag with
        # its attributes, a comment, ...): it needs all of it in memory, and expat 2.5 scans
        # it again on every call, so reads grow with it to keep a long one linear, not
        # quadratic. No read is longer than the limit: a piece within the limit is never
        # refused, one over twice the limit always is, as soon as its excess has been read.
        pending = size - parser.CurrentByteIndex
        if pending > limits.max_markup_bytes:
            raise EventError(
                filename,
                "a single piece of markup (a tag with its attributes, or a comment) is "
                f"larger than {limits.max_markup_bytes} bytes",
                parser.CurrentLineNumber,
            )
        if pending > chunk_size:
            want = min(pending, limits.max_markup_bytes + 1 - pending)
        else:
            want = chunk_size
        if handler.events:
            ready, handler.events = handler.events, []
            yield from ready
    _run(parse, b"", True, handler)
    yield from handler.events


def _expat_parser(handler: ElementHandler) -> Any:
    """The expat parser with defusedxml's guards (any DTD, entity declaration or external
    reference raises) and the handler's callbacks installed directly, without ElementTree's
    per-element wrappers: attributes arrive as the dict expat builds, tags as ``uri}local``."""
    defused = DefusedXMLParser(
        target=handler, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    parser = defused.parser
    parser.ordered_attributes = False
    parser.buffer_text = True
    parser.buffer_size = _CHUNK
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    # Text is only wanted inside a few elements: ElementHandler installs a text callback for those.
    parser.CharacterDataHandler = None
    # ElementTree's default handler only resolves entities of a DTD, which is refused anyway;
    # without it expat itself reports an undefined entity as malformed XML.
    parser.DefaultHandlerExpand = None
    return parser


def _run(parse: Any, chunk: bytes, final: bool, handler: ElementHandler) -> None:
    """One parser step, with every failure turned into an EventError that leaks no content."""
    filename = handler.filename
    try:
        parse(chunk, final)
    except EventError:
        raise
    except expat.ExpatError as err:
        reason = expat.ErrorString(err.code)
        raise EventError(
            filename, f"malformed XML: {reason} (column {err.offset + 1})", err.lineno
        ) from None
    except DTDForbidden:
        # The DTD is where billion-laughs and XXE payloads live; refusing it outright means no
        # entity is ever expanded or fetched.
        raise EventError(filename, "a DTD (<!DOCTYPE>) is not allowed", handler.line()) from None
    except EntitiesForbidden:
        raise EventError(filename, "entity declarations are not allowed", handler.line()) from None
    except ExternalReferenceForbidden:
        raise EventError(filename, "external references are not allowed", handler.line()) from None
    except (LookupError, UnicodeError) as err:
        raise EventError(filename, f"cannot decode the XML: {err}", handler.line()) from None
