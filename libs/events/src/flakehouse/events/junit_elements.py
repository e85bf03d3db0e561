"""What each JUnit XML element means to the streaming parser: expat's start/end callbacks, the
stack of enclosing suites, and the text kept for results, outputs and properties."""

from __future__ import annotations

from typing import Any, Final

from flakehouse.events.errors import EventError
from flakehouse.events.junit_case import Case, CaseMapper, Suite, property_field
from flakehouse.events.model import Event, Limits, truncate_text

# What kind of element the parser is inside; anything unknown is _IGNORE, and so is its subtree.
_IGNORE, _SUITE, _PROPERTIES, _PROPERTY, _CASE, _RESULT, _OUTPUT, _RERUN = range(8)

_RESULT_STATUS: Final = {"failure": "failed", "error": "error", "skipped": "skipped"}
_RANK: Final = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
_FLAKY: Final = frozenset({"flakyFailure", "flakyError"})
_RERUN_TAGS: Final = frozenset({"flakyFailure", "flakyError", "rerunFailure", "rerunError"})
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


class ElementHandler:
    """The parser's callbacks: expat calls start/data/end; finished events collect in
    ``events``. The testcase path (start, end) is the hot loop of ingestion, so it inlines what
    would otherwise be small helper calls."""

    def __init__(
        self, filename: str, upload_time_us: int, labels: dict[str, str], limits: Limits
    ) -> None:
        self.filename = filename
        self.limits = limits
        self.expat: Any = None
        self.events: list[Event] = []
        self._mapper = CaseMapper(filename, upload_time_us, labels, limits)
        self._stack: list[int] = []
        self._suites: list[Suite] = []
        self._case_attrs: dict[str, str] | None = None
        self._case_line = 0
        self._case: Case | None = None
        self._text: _Text | None = None
        self._props_owner: dict[str, str] | None = None
        self._prop_name: str | None = None
        self._prop_value: str | None = None
        self._output: str = ""
        self._max_depth = limits.max_depth
        self._attr_limit = limits.max_attribute_chars

    def line(self) -> int | None:
        try:
            line: int = self.expat.CurrentLineNumber
        except AttributeError:
            return None
        return line

    def _error(self, reason: str) -> EventError:
        return EventError(self.filename, reason, self.line())

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
                case = self._case = Case()
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
            attrs = self._case_attrs
            assert attrs is not None
            self.events.append(
                self._mapper.event(attrs, self._case, self._suites[-1], self._case_line)
            )
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
        mapper = self._mapper
        raw_timestamp = _blank_to_none(attrs.get("timestamp"))
        timestamp = parent.timestamp if parent else None
        if raw_timestamp is not None:
            timestamp = mapper.timestamp(raw_timestamp, "testsuite", self.line())
        self._suites.append(
            Suite(
                name=None if is_collection else mapper.attr(attrs, "name"),
                timestamp=timestamp,
                hostname=mapper.attr(attrs, "hostname") or (parent.hostname if parent else None),
                file=mapper.attr(attrs, "file") or (parent.file if parent else None),
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
        mapper = self._mapper
        case.status = status
        case.rank = _RANK[status]
        case.message = mapper.attr(attrs, "message", mapper.message_limit)
        case.type = mapper.attr(attrs, "type")
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
            owner[property_field(name)] = value


def _blank_to_none(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value
