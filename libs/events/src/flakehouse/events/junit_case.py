"""One JUnit testcase to one event (schema v1, rules in ``libs/events/JUNIT.md``): its
attributes, what its children said and what its enclosing suites pass down."""

from __future__ import annotations

import math
import re
from typing import Final

from flakehouse.events.errors import EventError
from flakehouse.events.model import PROPERTY_PREFIX, Event, Limits, truncate_text
from flakehouse.events.signature import signatures
from flakehouse.events.timestamps import parse_timestamp
from flakehouse.events.values import INT64_MAX, INT64_MIN

_TIMESTAMP_CACHE: Final = 4096
_SKIP_STATUSES: Final = frozenset({"disabled", "notrun"})
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
_NOT_FIELD_CHAR = re.compile(r"[^A-Za-z0-9_.:/-]")


class Suite:
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


class Case:
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


class CaseMapper:
    """Turns attribute values into fields for one report. :meth:`event` runs once per testcase,
    the hot loop of ingestion, so it inlines what would otherwise be small helper calls."""

    def __init__(
        self, filename: str, upload_time_us: int, labels: dict[str, str], limits: Limits
    ) -> None:
        self.filename = filename
        self.upload_time_us = upload_time_us
        self.labels = labels
        self.attr_limit = limits.max_attribute_chars
        self.message_limit = limits.max_message_chars
        self._max_fields = limits.max_fields_per_event
        self._signature = signatures()
        # Raw testcase timestamp -> microseconds: tools that stamp every case (googletest)
        # repeat a few distinct values many times.
        self._timestamps: dict[str, int] = {}

    def attr(self, attrs: dict[str, str], key: str, limit: int | None = None) -> str | None:
        value = attrs.get(key)
        if not value or value.isspace():
            return None
        limit = self.attr_limit if limit is None else limit
        if len(value) > limit:
            return truncate_text(value, limit)
        return value

    def timestamp(self, raw: str, element: str, line: int | None) -> int:
        try:
            return parse_timestamp(raw)
        except ValueError as err:
            raise self._error(f"<{element}> timestamp: {err}", line) from None

    def event(self, attrs: dict[str, str], case: Case | None, suite: Suite, line: int) -> Event:
        """The event of the testcase with these attributes, which starts on ``line``."""
        get = attrs.get
        limit = self.attr_limit
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
                timestamp = self.timestamp(raw, "testcase", line)
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
                event["line"] = self._line_number(raw, line)
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
                parsed = self._duration(raw_time, line)
                if parsed is not None:
                    event["duration"] = parsed
            else:
                if not math.isfinite(duration):
                    self._duration(raw_time, line)
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
                # Never blank: a blank message attribute is absent.
                event["signature"] = self._signature(case.message)
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
                line,
            )
        return event

    def _tail(self, suite: Suite) -> Event:
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
        if not INT64_MIN <= value <= INT64_MAX:
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

    def _error(self, reason: str, line: int | None) -> EventError:
        return EventError(self.filename, reason, line)


def property_field(name: str) -> str:
    """The field of a ``<property>`` named ``name``."""
    # Always a valid field name: the prefix starts with a letter and the rest is sanitised.
    return (PROPERTY_PREFIX + _NOT_FIELD_CHAR.sub("_", name))[:128]
