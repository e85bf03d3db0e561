"""JUnit XML to events, schema v1 (DESIGN.md §2 "JUnit → events"): one event per ``<testcase>``,
parsed from untrusted input as a stream with defusedxml's guarded expat parser, whose
callbacks go straight to this module (no ElementTree objects are built).

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
  Blanks after the ``T`` are ignored: JunitXml.TestLogger (``dotnet test --logger junit``)
  writes ``2019-09-01T 23:56:54Z``, which used to reject the whole report.
- Any DTD is refused (so no entity is ever expanded or fetched), as is a root other than
  ``<testsuites>``/``<testsuite>``; the error names the root and, when known, its format.
- One piece of markup (a start tag with its attributes, a comment) larger than
  ``Limits.max_markup_bytes`` rejects the file. expat must hold such a piece whole, and expat
  2.5 scans an unfinished piece again on every read, so a 100 MB attribute would cost minutes
  of CPU before it could be truncated; reads grow while a piece is unfinished so that pieces
  under the limit stay linear, and one over it is refused within a few reads.

What the dialects in ``tests/dialects`` show (no rule of their own, just these rules at work):
Surefire/Failsafe and Gradle's ``mergeReruns`` use the flaky/rerun elements, whose own
``stackTrace``/``system-out`` describe earlier runs and are not copied; gotestsum
``--rerun-fails`` instead writes each run as its own testcase, so a rerun there is two events
and not ``retries``; CTest ``status="notrun"``/``"disabled"``, googletest ``status="notrun"``
and Pester ``status="NotRun"`` without a child are skipped; kotest writes ignored tests
without any child, so they are indistinguishable from passes; Cypress (mocha-junit-reporter)
puts the spec file on an empty sibling "Root Suite", which is not an enclosing suite, so its
cases get no ``file``; Playwright annotations without a description are blank properties and
dropped.

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
from xml.parsers import expat

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from flakehouse.events.errors import EventError
from flakehouse.events.model import (
    PROPERTY_PREFIX,
    Event,
    Limits,
    check_parse_arguments,
    truncate_text,
)
from flakehouse.events.timestamps import parse_timestamp

_CHUNK: Final = 64 * 1024
_TIMESTAMP_CACHE: Final = 4096
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
    builder = _Builder(filename, upload_time_us, labels, limits)
    parser = _expat_parser(builder)
    builder.expat = parser
    parse = parser.Parse
    read = source.read
    size = 0
    chunk_size = want = min(_CHUNK, limits.max_markup_bytes)
    while chunk := read(want):
        size += len(chunk)
        if size > limits.max_file_bytes:
            raise EventError(filename, f"file is larger than {limits.max_file_bytes} bytes")
        _run(parse, chunk, False, builder)
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
        if builder.events:
            ready, builder.events = builder.events, []
            yield from ready
    _run(parse, b"", True, builder)
    yield from builder.events


def _expat_parser(builder: _Builder) -> Any:
    """The expat parser with defusedxml's guards (any DTD, entity declaration or external
    reference raises) and the builder's callbacks installed directly, without ElementTree's
    per-element wrappers: attributes arrive as the dict expat builds, tags as ``uri}local``."""
    defused = DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    parser = defused.parser
    parser.ordered_attributes = False
    parser.buffer_text = True
    parser.buffer_size = _CHUNK
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    # Text is only wanted inside a few elements: the builder installs a handler for those.
    parser.CharacterDataHandler = None
    # ElementTree's default handler only resolves entities of a DTD, which is refused anyway;
    # without it expat itself reports an undefined entity as malformed XML.
    parser.DefaultHandlerExpand = None
    return parser


def _run(parse: Any, chunk: bytes, final: bool, builder: _Builder) -> None:
    """One parser step, with every failure turned into an EventError that leaks no content."""
    filename = builder.filename
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

    __slots__ = ("file", "hostname", "name", "props", "tail", "timestamp")

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
        # The fields after `duration` of a case without children (retries, flaky, hostname,
        # props, labels), built when the first case needs them: props may still grow while
        # the suite's <properties> are read.
        self.tail: Event | None = None


class _Case:
    """What the children of a testcase say; only created when the case has children."""

    __slots__ = (
        "flaky",
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

    def __init__(self) -> None:
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
    """The parser's callbacks: expat calls start/data/end; finished events collect in
    ``events``. The testcase path (start, end, event) is the hot loop of ingestion, so it
    inlines what would otherwise be small helper calls."""

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
        self._case_attrs: dict[str, str] | None = None
        self._case_line = 0
        self._case: _Case | None = None
        self._text: _Text | None = None
        self._props_owner: dict[str, str] | None = None
        self._prop_name: str | None = None
        self._prop_value: str | None = None
        self._output: str = ""
        self._max_depth = limits.max_depth
        self._attr_limit = limits.max_attribute_chars
        self._message_limit = limits.max_message_chars
        self._max_fields = limits.max_fields_per_event
        # Raw testcase timestamp -> microseconds: tools that stamp every case (googletest)
        # repeat a few distinct values many times.
        self._timestamps: dict[str, int] = {}

    def line(self) -> int | None:
        try:
            line: int = self.expat.CurrentLineNumber
        except AttributeError:
            return None
        return line

    def _error(self, reason: str, line: int | None = None) -> EventError:
        return EventError(self.filename, reason, self.line() if line is None else line)

    # expat callbacks

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        stack = self._stack
        depth = len(stack)
        if depth >= self._max_depth:
            raise self._error(f"elements are nested deeper than {self._max_depth} levels")
        if "}" in tag:
            tag = tag.rpartition("}")[2]
        if not depth:
            self._start_root(tag, attrs)
            return
        parent = stack[-1]
        kind = _IGNORE
        if parent == _SUITE:
            if tag == "testcase":
                kind = _CASE
                self._case_attrs = attrs
                self._case_line = self.expat.CurrentLineNumber
                self._case = None
            elif tag == "testsuite":
                kind = _SUITE
                self._start_suite(attrs, is_collection=False)
            elif tag == "properties":
                kind = _PROPERTIES
                suite = self._suites[-1]
                self._props_owner = suite.props
                suite.tail = None  # rebuilt with the new properties by the next case
        elif parent == _CASE:
            case = self._case
            if case is None:
                case = self._case = _Case()
            if tag in _RESULT_STATUS:
                kind = _RESULT
                case.result_attrs = attrs
                # Only failure/error text is kept (as `stack`); a skip's text is not.
                if tag != "skipped":
                    self._collect(self.limits.max_text_chars)
            elif tag in _RERUN_TAGS:
                kind = _RERUN
                case.retries += 1
                if tag in _FLAKY:
                    case.flaky += 1
            elif tag in _OUTPUTS:
                kind = _OUTPUT
                self._output = _OUTPUTS[tag]
                self._collect(self.limits.max_text_chars)
            elif tag == "properties":
                kind = _PROPERTIES
                self._props_owner = case.props
        elif parent == _PROPERTIES and tag == "property":
            kind = _PROPERTY
            self._prop_name = _blank_to_none(attrs.get("name"))
            self._prop_value = attrs.get("value")
            if self._prop_value is None and self._prop_name is not None:
                self._collect(self._attr_limit)
        stack.append(kind)

    def _collect(self, limit: int) -> None:
        """Start keeping the text of the current element (up to ``limit`` characters): the
        text goes straight to the _Text, and between such elements expat calls nothing at all
        for text (the whitespace of pretty-printed reports)."""
        text = self._text = _Text(limit)
        self.expat.CharacterDataHandler = text.add

    def _take(self) -> _Text | None:
        """The text kept since :meth:`_collect`, which stops keeping it."""
        text, self._text = self._text, None
        if text is not None:
            self.expat.CharacterDataHandler = None
        return text

    def end(self, tag: str) -> None:
        kind = self._stack.pop()
        if kind == _CASE:
            self.events.append(self._event())
        elif kind == _SUITE:
            self._suites.pop()
        elif kind == _RESULT:
            self._end_result(tag)
        elif kind == _OUTPUT:
            text = self._take()
            assert self._case is not None and text is not None
            setattr(self._case, self._output, text.value())
        elif kind == _PROPERTY:
            self._end_property()
        elif kind == _PROPERTIES:
            self._props_owner = None

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
        text = self._take()
        if "}" in tag:
            tag = tag.rpartition("}")[2]
        status = _RESULT_STATUS[tag]
        if _RANK[status] <= case.rank:
            return
        attrs = case.result_attrs
        case.status = status
        case.rank = _RANK[status]
        case.message = self._attr(attrs, "message", self._message_limit)
        case.type = self._attr(attrs, "type")
        case.stack = text.value() if text is not None else None

    def _end_property(self) -> None:
        name, value = self._prop_name, self._prop_value
        text = self._take()
        self._prop_name = self._prop_value = None
        owner = self._props_owner
        if name is None or owner is None:
            return
        if value is None:
            value = text.value() if text is not None else None
        elif not value.strip():
            value = None
        elif len(value) > self._attr_limit:
            value = truncate_text(value, self._attr_limit)
        if value is not None:
            owner[_property_field(name)] = value

    def _attr(self, attrs: dict[str, str], key: str, limit: int | None = None) -> str | None:
        value = attrs.get(key)
        if not value or value.isspace():
            return None
        limit = self._attr_limit if limit is None else limit
        if len(value) > limit:
            return truncate_text(value, limit)
        return value

    def _timestamp(self, raw: str, element: str, line: int | None = None) -> int:
        try:
            return parse_timestamp(raw)
        except ValueError as err:
            raise self._error(f"<{element}> timestamp: {err}", line) from None

    def _event(self) -> Event:
        attrs = self._case_attrs
        assert attrs is not None
        case = self._case
        suite = self._suites[-1]
        get = attrs.get
        limit = self._attr_limit
        classname = get("classname")
        name = get("name")
        raw_time = get("time")
        # Most cases have just these three attributes: then the others need no look-up.
        others = len(attrs) != (
            (classname is not None) + (name is not None) + (raw_time is not None)
        )
        raw = get("timestamp") if others else None
        if raw and not raw.isspace():
            timestamp = self._timestamps.get(raw)
            if timestamp is None:
                timestamp = self._timestamp(raw, "testcase", self._case_line)
                if len(self._timestamps) >= _TIMESTAMP_CACHE:
                    self._timestamps.clear()
                self._timestamps[raw] = timestamp
        elif suite.timestamp is not None:
            timestamp = suite.timestamp
        else:
            timestamp = self.upload_time_us
        if suite.name is not None:
            event: Event = {"timestamp": timestamp, "suite": suite.name}
        else:
            event = {"timestamp": timestamp}
        if (not classname or classname.isspace()) and others:
            classname = get("class")
        if classname and not classname.isspace():
            event["classname"] = (
                classname if len(classname) <= limit else truncate_text(classname, limit)
            )
        if name and not name.isspace():
            event["name"] = name if len(name) <= limit else truncate_text(name, limit)
        if others:
            value = get("file")
            if value and not value.isspace():
                event["file"] = value if len(value) <= limit else truncate_text(value, limit)
            elif suite.file is not None:
                event["file"] = suite.file
            raw = get("line")
            if raw and not raw.isspace():
                event["line"] = self._line_number(raw, self._case_line)
        elif suite.file is not None:
            event["file"] = suite.file
        status = "passed" if case is None else case.status
        if status == "passed" and others:
            raw = get("status")
            if raw is not None and raw.strip().lower() in _SKIP_STATUSES:
                status = "skipped"
        event["status"] = status
        if raw_time is not None:
            try:
                duration = float(raw_time)
            except ValueError:
                # Blank, or with commas: the rare forms, handled (or rejected) slowly.
                parsed = self._duration(raw_time, self._case_line)
                if parsed is not None:
                    event["duration"] = parsed
            else:
                if not math.isfinite(duration):
                    self._duration(raw_time, self._case_line)
                event["duration"] = duration
        if case is None:
            # Everything after the duration is the same for every childless case of a suite.
            tail = suite.tail
            if tail is None:
                tail = suite.tail = self._tail(suite)
            event.update(tail)
        else:
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
        if len(event) > self._max_fields:
            raise self._error(
                f"testcase has {len(event)} fields, more than the limit of "
                f"{self._max_fields} (too many properties?)",
                self._case_line,
            )
        return event

    def _tail(self, suite: _Suite) -> Event:
        tail: Event = {"retries": 0, "flaky": False}
        if suite.hostname is not None:
            tail["hostname"] = suite.hostname
        tail.update(suite.props)
        tail.update(self.labels)
        return tail

    def _line_number(self, raw: str, line: int) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise self._error(f"<testcase> line is not an integer: {raw[:64]!r}", line) from None
        if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            raise self._error(f"<testcase> line is out of range: {raw[:64]!r}", line)
        return value

    def _duration(self, raw: str, line: int) -> float | None:
        """Seconds from a ``time`` attribute, None when it is blank; EventError when it is not
        a finite number."""
        text = raw.strip()
        if not text:
            return None
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
