"""JUnit XML to events, schema v1 (DESIGN.md §2 "JUnit → events"): one event per ``<testcase>``,
parsed from untrusted input as a stream with defusedxml.

Choices where the schema leaves room (they are part of schema v1 from now on):

- ``retries`` (int, 0 when none) and ``flaky`` (bool) are on every event, so that
  ``WHERE flaky = false`` and ``sum(retries)`` work without IS NULL gymnastics. ``flaky`` is
  true when the case passed and has at least one ``flakyFailure``/``flakyError`` child;
  ``rerunFailure``/``rerunError`` count as retries but never make a case flaky (Surefire writes
  them when every rerun failed).
- Several result elements in one case: ``error`` beats ``failure`` beats ``skipped``;
  ``message``, ``type`` and ``stack`` come from the element that decided the status (the first
  one of that kind).
- The root ``<testsuites>`` counts as the outermost enclosing suite for ``timestamp``,
  ``hostname``, ``file`` and properties (it is where some tools put the run's timestamp and
  properties), never for ``suite``, which is only ever a ``<testsuite>``'s name.
- An attribute that is empty or blank is absent (jest writes ``classname=""``).
- A property's value is its ``value`` attribute, else its text with surrounding whitespace
  removed. Its field name is ``prop.`` + the property name with every character that a field
  name does not allow replaced by ``_``, cut to 128 characters; a property without a name or
  with a blank value is dropped. A later property of the same name wins within one element;
  the case beats its suites and an inner suite beats an outer one.
- Parsing is streamed, so a suite's properties apply to the cases that follow them in the file
  (every known tool writes them first, as the JUnit XSD orders them).
- ``stack`` is the text of the deciding ``failure``/``error`` (not of ``skipped``); ``stdout``
  and ``stderr`` are the case's own ``system-out``/``system-err`` (a suite's are not copied
  to its cases). All three lose surrounding whitespace and are truncated to
  ``Limits.max_text_chars``; ``message`` to ``Limits.max_message_chars``; every other string to
  ``Limits.max_attribute_chars``. Truncated text ends with ``… [truncated, N chars]``.
- An unparseable ``timestamp``, ``time`` or ``line`` rejects the file with its line number:
  guessing would file results under the wrong time or number. ``time`` accepts thousands
  separators (``1,234.5``) and, when it has one comma and no dot, a decimal comma (``0,5``).
- A testcase nested inside anything but a suite (e.g. inside another testcase) is ignored;
  elements are matched by local name, so a namespace prefix does not matter.
- Timestamps: ISO 8601 / RFC 3339 with ``T`` or a space, fractional seconds, ``Z``, an offset
  or a `` UTC`` suffix, and RFC 2822 (mocha); no zone means UTC (see ``timestamps.py``).
- Any DTD is refused (so no entity is ever expanded or fetched), as is a root other than
  ``<testsuites>``/``<testsuite>``; the error names the root and, when known, its format.

Because events are yielded as soon as their testcase closes, an error further down the file
arrives after some events: a caller that must write nothing from a bad file uses
:func:`parse_junit_all`, or consumes the whole iterator before writing anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, BinaryIO, Final
from xml.etree.ElementTree import ParseError
from xml.parsers import expat

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from flakehouse.events.errors import EventError
from flakehouse.events.model import (
    PROPERTY_PREFIX,
    Event,
    Limits,
    truncate_text,
    validate_labels,
)
from flakehouse.events.timestamps import parse_timestamp

_CHUNK: Final = 64 * 1024
_NO_LABELS: Mapping[str, str] = MappingProxyType({})
_INT64_MAX: Final = 2**63 - 1

# What kind of element the parser is inside; anything unknown is _IGNORE, and so is its subtree.
_IGNORE, _SUITE, _PROPERTIES, _PROPERTY, _CASE, _RESULT, _OUTPUT, _RERUN = range(8)

_RESULT_STATUS: Final = {"failure": "failed", "error": "error", "skipped": "skipped"}
_RANK: Final = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
_FLAKY: Final = frozenset({"flakyFailure", "flakyError"})
_RERUN_TAGS: Final = frozenset({"flakyFailure", "flakyError", "rerunFailure", "rerunError"})
_SKIP_STATUSES: Final = frozenset({"disabled", "notrun"})
_OUTPUTS: Final = {"system-out": "stdout", "system-err": "stderr"}

# Roots of other test report formats: naming the format makes the rejection actionable.
_OTHER_FORMATS: Final = {
    "test-run": "NUnit 3",
    "test-results": "NUnit 2",
    "assemblies": "xUnit.net v2",
    "assembly": "xUnit.net",
    "TestRun": "MSTest TRX",
    "testExecutions": "SonarQube generic test data",
}

_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
_NOT_FIELD_CHAR = re.compile(r"[^A-Za-z0-9_.:/-]")


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
    is not a well-formed, bounded JUnit report. See the module docstring for partial output."""
    checked = validate_labels(labels)
    if isinstance(upload_time_us, bool) or not isinstance(upload_time_us, int):
        raise TypeError("upload_time_us must be an int (microseconds since the epoch)")
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
    builder = _Builder(filename, upload_time_us, labels, limits)
    parser = DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    builder.expat = parser.parser
    size = 0
    while chunk := source.read(_CHUNK):
        size += len(chunk)
        if size > limits.max_file_bytes:
            raise EventError(filename, f"file is larger than {limits.max_file_bytes} bytes")
        _run(parser.feed, chunk, builder)
        if builder.events:
            ready, builder.events = builder.events, []
            yield from ready
    _run(lambda _: parser.close(), b"", builder)
    yield from builder.events


def _run(step: Any, chunk: bytes, builder: _Builder) -> None:
    """One parser step, with every failure turned into an EventError that leaks no content."""
    filename = builder.filename
    try:
        step(chunk)
    except EventError:
        raise
    except ParseError as err:
        line, column = err.position
        reason = expat.ErrorString(err.code) if isinstance(err.code, int) else str(err)
        raise EventError(filename, f"malformed XML: {reason} (column {column + 1})", line) from None
    except DTDForbidden:
        # The DTD is where billion-laughs and XXE payloads live; refusing it outright means no
        # entity is ever expanded or fetched.
        raise EventError(filename, "a DTD (<!DOCTYPE>) is not allowed", builder.line()) from None
    except EntitiesForbidden:
        raise EventError(filename, "entity declarations are not allowed", builder.line()) from None
    except ExternalReferenceForbidden:
        raise EventError(filename, "external references are not allowed", builder.line()) from None
    except (LookupError, UnicodeError) as err:
        raise EventError(filename, f"cannot decode the XML: {err}", builder.line()) from None


class _Text:
    """Text of one element, kept only up to its limit while counting the whole length, so that
    a huge system-out costs no more memory than its truncated form."""

    __slots__ = ("chunks", "end", "kept", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[str] = []
        self.kept = 0
        self.size = 0  # characters seen, after the leading whitespace
        self.end = 0  # characters seen up to the last non-whitespace one

    def add(self, data: str) -> None:
        if not self.size:
            data = data.lstrip()
            if not data:
                return
        start = self.size
        self.size += len(data)
        stripped = len(data.rstrip())
        if stripped:
            self.end = start + stripped
        room = self.limit + 1 - self.kept
        if room > 0:
            piece = data[:room]
            self.chunks.append(piece)
            self.kept += len(piece)

    def value(self) -> str | None:
        text = "".join(self.chunks)[: self.end].rstrip()
        if not text:
            return None
        return truncate_text(text, self.limit, self.end)


class _Suite:
    """What a testsuite (or the root testsuites) passes down to the cases inside it."""

    __slots__ = ("file", "hostname", "name", "props", "timestamp")

    def __init__(
        self,
        name: str | None,
        timestamp: int | None,
        hostname: str | None,
        file: str | None,
        props: dict[str, str],
    ) -> None:
        self.name = name
        self.timestamp = timestamp
        self.hostname = hostname
        self.file = file
        self.props = props


class _Case:
    __slots__ = (
        "attrs",
        "flaky",
        "line",
        "message",
        "props",
        "rank",
        "result_attrs",
        "retries",
        "stack",
        "status",
        "stderr",
        "stdout",
        "type",
    )

    def __init__(self, attrs: dict[str, str], line: int) -> None:
        self.attrs = attrs
        self.line = line
        self.status = "passed"
        self.rank = 0
        self.message: str | None = None
        self.type: str | None = None
        self.stack: str | None = None
        self.retries = 0
        self.flaky = 0
        self.props: dict[str, str] = {}
        self.stdout: str | None = None
        self.stderr: str | None = None
        self.result_attrs: dict[str, str] = {}


class _Builder:
    """The parser's target: expat calls start/data/end; finished events collect in ``events``."""

    def __init__(
        self, filename: str, upload_time_us: int, labels: dict[str, str], limits: Limits
    ) -> None:
        self.filename = filename
        self.upload_time_us = upload_time_us
        self.labels = labels
        self.limits = limits
        self.expat: Any = None
        self.events: list[Event] = []
        self._stack: list[int] = []
        self._suites: list[_Suite] = []
        self._case: _Case | None = None
        self._text: _Text | None = None
        self._props_owner: dict[str, str] | None = None
        self._prop_name: str | None = None
        self._prop_value: str | None = None
        self._output: str = ""

    def line(self) -> int | None:
        try:
            line: int = self.expat.CurrentLineNumber
        except AttributeError:  # the parser is gone after close()
            return None
        return line

    def _error(self, reason: str, line: int | None = None) -> EventError:
        return EventError(self.filename, reason, self.line() if line is None else line)

    # expat callbacks

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        stack = self._stack
        if len(stack) >= self.limits.max_depth:
            raise self._error(f"elements are nested deeper than {self.limits.max_depth} levels")
        if tag[0] == "{":
            tag = tag.rpartition("}")[2]
        if not stack:
            self._start_root(tag, attrs)
            return
        parent = stack[-1]
        kind = _IGNORE
        if parent == _SUITE:
            if tag == "testcase":
                kind = _CASE
                self._case = _Case(attrs, self.line() or 0)
            elif tag == "testsuite":
                kind = _SUITE
                self._start_suite(attrs, is_collection=False)
            elif tag == "properties":
                kind = _PROPERTIES
                self._props_owner = self._suites[-1].props
        elif parent == _CASE:
            case = self._case
            assert case is not None
            if tag in _RESULT_STATUS:
                kind = _RESULT
                case.result_attrs = attrs
                # Only failure/error text is kept (as `stack`); a skip's text is not.
                self._text = _Text(self.limits.max_text_chars) if tag != "skipped" else None
            elif tag in _RERUN_TAGS:
                kind = _RERUN
                case.retries += 1
                if tag in _FLAKY:
                    case.flaky += 1
            elif tag in _OUTPUTS:
                kind = _OUTPUT
                self._output = _OUTPUTS[tag]
                self._text = _Text(self.limits.max_text_chars)
            elif tag == "properties":
                kind = _PROPERTIES
                self._props_owner = case.props
        elif parent == _PROPERTIES and tag == "property":
            kind = _PROPERTY
            self._prop_name = _blank_to_none(attrs.get("name"))
            self._prop_value = attrs.get("value")
            if self._prop_value is None and self._prop_name is not None:
                self._text = _Text(self.limits.max_attribute_chars)
        stack.append(kind)

    def data(self, text: str) -> None:
        if self._text is not None:
            self._text.add(text)

    def end(self, tag: str) -> None:
        kind = self._stack.pop()
        if kind == _SUITE:
            self._suites.pop()
        elif kind == _CASE:
            case = self._case
            assert case is not None
            self._case = None
            self.events.append(self._event(case))
        elif kind == _RESULT:
            self._end_result(tag)
        elif kind == _OUTPUT:
            assert self._case is not None and self._text is not None
            setattr(self._case, self._output, self._text.value())
            self._text = None
        elif kind == _PROPERTY:
            self._end_property()
        elif kind == _PROPERTIES:
            self._props_owner = None

    def close(self) -> None:
        return None

    # helpers

    def _start_root(self, tag: str, attrs: dict[str, str]) -> None:
        if tag not in ("testsuites", "testsuite"):
            other = _OTHER_FORMATS.get(tag)
            hint = f" (this looks like {other})" if other else ""
            raise self._error(
                f"not a JUnit XML report: the root element is <{tag[:64]}>, "
                f"not <testsuites> or <testsuite>{hint}"
            )
        self._start_suite(attrs, is_collection=tag == "testsuites")
        self._stack.append(_SUITE)

    def _start_suite(self, attrs: dict[str, str], *, is_collection: bool) -> None:
        parent = self._suites[-1] if self._suites else None
        raw_timestamp = _blank_to_none(attrs.get("timestamp"))
        timestamp = parent.timestamp if parent else None
        if raw_timestamp is not None:
            timestamp = self._timestamp(raw_timestamp, "testsuite")
        self._suites.append(
            _Suite(
                name=None if is_collection else self._attr(attrs, "name"),
                timestamp=timestamp,
                hostname=self._attr(attrs, "hostname") or (parent.hostname if parent else None),
                file=self._attr(attrs, "file") or (parent.file if parent else None),
                props=dict(parent.props) if parent else {},
            )
        )

    def _end_result(self, tag: str) -> None:
        case = self._case
        assert case is not None
        text, self._text = self._text, None
        if tag[0] == "{":
            tag = tag.rpartition("}")[2]
        status = _RESULT_STATUS[tag]
        if _RANK[status] <= case.rank:
            return
        attrs = case.result_attrs
        case.status = status
        case.rank = _RANK[status]
        case.message = self._attr(attrs, "message", self.limits.max_message_chars)
        case.type = self._attr(attrs, "type")
        case.stack = text.value() if text is not None else None

    def _end_property(self) -> None:
        name, value = self._prop_name, self._prop_value
        text, self._text = self._text, None
        self._prop_name = self._prop_value = None
        owner = self._props_owner
        if name is None or owner is None:
            return
        if value is None:
            value = text.value() if text is not None else None
        elif not value.strip():
            value = None
        elif len(value) > self.limits.max_attribute_chars:
            value = truncate_text(value, self.limits.max_attribute_chars)
        if value is not None:
            owner[_property_field(name)] = value

    def _attr(self, attrs: dict[str, str], key: str, limit: int | None = None) -> str | None:
        value = attrs.get(key)
        if value is None or not value.strip():
            return None
        limit = self.limits.max_attribute_chars if limit is None else limit
        if len(value) > limit:
            return truncate_text(value, limit)
        return value

    def _timestamp(self, raw: str, element: str, line: int | None = None) -> int:
        try:
            return parse_timestamp(raw)
        except ValueError as err:
            raise self._error(f"<{element}> timestamp: {err}", line) from None

    def _event(self, case: _Case) -> Event:
        attrs = case.attrs
        suite = self._suites[-1]
        raw_timestamp = _blank_to_none(attrs.get("timestamp"))
        if raw_timestamp is not None:
            timestamp = self._timestamp(raw_timestamp, "testcase", case.line)
        elif suite.timestamp is not None:
            timestamp = suite.timestamp
        else:
            timestamp = self.upload_time_us
        event: Event = {"timestamp": timestamp}
        if suite.name is not None:
            event["suite"] = suite.name
        classname = self._attr(attrs, "classname") or self._attr(attrs, "class")
        if classname is not None:
            event["classname"] = classname
        name = self._attr(attrs, "name")
        if name is not None:
            event["name"] = name
        file = self._attr(attrs, "file") or suite.file
        if file is not None:
            event["file"] = file
        raw_line = _blank_to_none(attrs.get("line"))
        if raw_line is not None:
            event["line"] = self._line_number(raw_line, case.line)
        status = case.status
        if status == "passed" and (attrs.get("status") or "").strip().lower() in _SKIP_STATUSES:
            status = "skipped"
        event["status"] = status
        raw_time = _blank_to_none(attrs.get("time"))
        if raw_time is not None:
            event["duration"] = self._duration(raw_time, case.line)
        if case.message is not None:
            event["message"] = case.message
        if case.type is not None:
            event["type"] = case.type
        event["retries"] = case.retries
        event["flaky"] = status == "passed" and case.flaky > 0
        if suite.hostname is not None:
            event["hostname"] = suite.hostname
        if case.stack is not None:
            event["stack"] = case.stack
        if case.stdout is not None:
            event["stdout"] = case.stdout
        if case.stderr is not None:
            event["stderr"] = case.stderr
        event.update(suite.props)
        event.update(case.props)
        event.update(self.labels)
        if len(event) > self.limits.max_fields_per_event:
            raise self._error(
                f"testcase has {len(event)} fields, more than the limit of "
                f"{self.limits.max_fields_per_event} (too many properties?)",
                case.line,
            )
        return event

    def _line_number(self, raw: str, line: int) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise self._error(f"<testcase> line is not an integer: {raw[:64]!r}", line) from None
        if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            raise self._error(f"<testcase> line is out of range: {raw[:64]!r}", line)
        return value

    def _duration(self, raw: str, line: int) -> float:
        text = raw.strip()
        if _THOUSANDS.match(text):
            text = text.replace(",", "")
        elif text.count(",") == 1 and "." not in text:
            text = text.replace(",", ".")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise self._error(f"<testcase> time is not a number of seconds: {raw[:64]!r}", line)
        return value


def _blank_to_none(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value


def _property_field(name: str) -> str:
    # Always a valid field name: the prefix starts with a letter and the rest is sanitised.
    return (PROPERTY_PREFIX + _NOT_FIELD_CHAR.sub("_", name))[:128]
