"""JSON lines to events: one flat JSON object per line, read with orjson, and with the standard
library's parser wherever the two could differ (the rules: libs/events/JSONLINES.md)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, BinaryIO, Final

import orjson

from flakehouse.events.errors import EventError
from flakehouse.events.model import (
    FIELD_NAME,
    TIMESTAMP,
    Event,
    Limits,
    check_parse_arguments,
)
from flakehouse.events.signature import MESSAGE, add_signature, signatures
from flakehouse.events.timestamps import epoch_seconds_to_us, parse_timestamp
from flakehouse.events.values import INT64_MAX, INT64_MIN

_NO_LABELS: Mapping[str, str] = MappingProxyType({})
_BOM: Final = b"\xef\xbb\xbf"
_JSON_TYPES: Final[dict[type, str]] = {dict: "an object", list: "an array"}
_KEY_END: Final = re.compile(rb'"[ \t\r\n]*:')
# orjson reads an integer literal beyond 64 bits as a float, where the standard library keeps
# the int (and the int is then refused): a float this large is checked the standard way.
_FLOAT_BOUND: Final = 2.0**63
# Bounds on the quick path's memory of names already checked and timestamps already parsed.
_CACHED: Final = 4096
_LONE_BRACKETS: Final = frozenset({"{", "[", "}", "]", "},", "],"})
_PROPERTY_LINE: Final = re.compile(r'"(?:[^"\\]|\\.)*"\s*:')


def _describe(value: Any) -> str:
    return _JSON_TYPES.get(type(value), f"a {type(value).__name__}")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _NonFinite(Exception):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _constant(name: str) -> Any:
    raise _NonFinite(name)


def parse_json_lines(
    source: BinaryIO,
    *,
    filename: str,
    upload_time_us: int,
    labels: Mapping[str, str] = _NO_LABELS,
    limits: Limits = Limits(),  # noqa: B008 (frozen, so sharing the default is safe)
    after: tuple[int, int] = (0, 0),
) -> Iterator[Event]:
    """Events of a JSON lines file, one per non-blank line, yielded as the stream is read.

    ``after`` is (lines, bytes) of the file before ``source`` when it is a part of a file that
    starts at a line (see :func:`count_json_lines`): errors then name the file's line numbers,
    and the size limit counts the bytes before.

    Raises ValueError at once for a bad label, and EventError (while iterating) naming the line
    and the field for input that breaks the rules in libs/events/JSONLINES.md."""
    checked = check_parse_arguments(labels, upload_time_us)
    return _parse(source, filename, upload_time_us, checked, limits, after)


def count_json_lines(
    source: BinaryIO,
    end: int,
    limits: Limits = Limits(),  # noqa: B008
) -> tuple[int, int]:
    """(lines, events) in the first ``end`` bytes of a JSON lines file (``end`` at the start of
    a line), counted as the parser counts them: what a part of the file starting there needs
    for its line numbers and its events' positions."""
    readline = source.readline
    bound = limits.max_line_bytes + 1
    lines = events = read = 0
    while read < end and (raw := readline(min(bound, end - read))):
        lines += 1
        read += len(raw)
        if lines == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if raw and not raw.isspace():
            events += 1
    return lines, events


def parse_json_lines_all(
    source: BinaryIO,
    *,
    filename: str,
    upload_time_us: int,
    labels: Mapping[str, str] = _NO_LABELS,
    limits: Limits = Limits(),  # noqa: B008
) -> list[Event]:
    """Every event of the file, or EventError before any is returned."""
    return list(
        parse_json_lines(
            source, filename=filename, upload_time_us=upload_time_us, labels=labels, limits=limits
        )
    )


def _parse(
    source: BinaryIO,
    filename: str,
    upload_time_us: int,
    labels: dict[str, str],
    limits: Limits,
    after: tuple[int, int],
) -> Iterator[Event]:
    quick = _quick(upload_time_us, labels, limits)
    readline = source.readline
    bound = limits.max_line_bytes + 1
    number, size = after
    while raw := readline(bound):
        number += 1
        size += len(raw)
        if size > limits.max_file_bytes:
            raise EventError(filename, f"file is larger than {limits.max_file_bytes} bytes")
        if len(raw) > limits.max_line_bytes:
            raise EventError(filename, f"line is longer than {limits.max_line_bytes} bytes", number)
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
            if not raw:
                continue
        if raw.isspace():
            continue
        event = quick(raw)
        if event is None:
            obj = _load(raw, filename, number)
            event = _event(obj, raw, filename, number, upload_time_us, labels, limits)
        yield event


def _quick(
    upload_time_us: int, labels: dict[str, str], limits: Limits
) -> Callable[[bytes], Event | None]:
    """The quick reading of one line: its event, or None when the line must go the exact way
    (:func:`_load` and :func:`_event`, with the standard library's parser), which then gives
    the event or the error: for every bad line, and for the good ones that orjson could read
    differently (JSONLINES.md, "Two readings of a line")."""
    max_chars = limits.max_attribute_chars
    max_fields = limits.max_fields_per_event
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    valid_name = FIELD_NAME.fullmatch
    names: set[str] = set()  # field names known to be valid
    stamps: dict[str, int] = {}  # timestamp strings already parsed
    sign = signatures()
    count_keys = _KEY_END.findall
    low, high = INT64_MIN, INT64_MAX
    bound = _FLOAT_BOUND

    def quick(raw: bytes) -> Event | None:
        try:
            obj = loads(raw)
        except decode_error:
            return None
        if type(obj) is not dict:
            return None
        strings = 0
        nulls = False
        for value in obj.values():
            kind = type(value)
            if kind is str:
                strings += 1
            elif kind is int:
                if not low <= value <= high:
                    return None
            elif kind is float:
                if not -bound < value < bound:
                    return None
            elif value is None:
                nulls = True
            elif kind is not bool:
                return None
        # A string has no more characters than the line has bytes.
        if len(raw) > max_chars and any(
            type(value) is str and len(value) > max_chars for value in obj.values()
        ):
            return None
        if not obj.keys() <= names:
            for key in obj.keys() - names:
                if not valid_name(key):
                    return None
                if len(names) < _CACHED:
                    names.add(key)
        # No repeated keys. Every '"' in the line opens or closes a string (a key or a value)
        # or is escaped in one, so a line with exactly 2 * (keys + string values) of them has no
        # key beyond those kept: a repeat adds at least its key's two. A line with escaped
        # quotes has more; then every key still ends in a match of '"\s*:', as does an escaped
        # '\":' in a value: as many matches as keys means no repeats (more only means a value
        # holds '":').
        if raw.count(b'"') != 2 * (len(obj) + strings) and len(count_keys(raw)) != len(obj):
            return None
        stamp = obj.get(TIMESTAMP)
        if nulls:
            for key in [key for key, value in obj.items() if value is None]:
                del obj[key]
        if stamp is None:
            obj[TIMESTAMP] = upload_time_us
        elif type(stamp) is str:
            us = stamps.get(stamp)
            if us is None:
                try:
                    us = parse_timestamp(stamp)
                except ValueError:
                    return None
                if len(stamps) >= _CACHED:
                    stamps.clear()
                stamps[stamp] = us
            obj[TIMESTAMP] = us
        else:
            # An int or a float (a bool, too, which the exact path refuses).
            if type(stamp) is bool:
                return None
            try:
                obj[TIMESTAMP] = epoch_seconds_to_us(stamp)
            except ValueError:
                return None
        if MESSAGE in obj:
            add_signature(obj, sign)
        if labels:
            obj.update(labels)
        if len(obj) > max_fields:
            return None
        return obj

    return quick


def _load(raw: bytes, filename: str, number: int) -> dict[str, Any]:
    def error(reason: str) -> EventError:
        return EventError(filename, reason, number)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"not valid UTF-8 (byte {err.start + 1} of the line)") from None
    try:
        obj = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except json.JSONDecodeError as err:
        if _pretty_printed(text):
            raise error(
                f"expected one JSON object per line, but line {number} is "
                f"{_clip(text.strip())}: the file looks pretty-printed (one object over several "
                "lines); write each event on a line of its own, e.g. with `jq -c .`"
            ) from None
        raise error(f"invalid JSON: {err.msg} (column {err.colno})") from None
    except ValueError:
        # Python refuses to convert an integer literal of more than 4300 digits (a guard
        # against quadratic time); its message suggests a setting to the reader.
        raise error("invalid JSON: an integer too long to read (values are 64-bit)") from None
    except _DuplicateKey as err:
        raise error(f"field {err.key[:128]!r} appears twice") from None
    except _NonFinite as err:
        raise error(f"{err} is not a valid value (numbers must be finite)") from None
    except RecursionError:
        raise error("JSON is nested too deeply (events are flat)") from None
    if not isinstance(obj, dict):
        raise error(f"expected a JSON object, got {_describe(obj)}")
    return obj


def _pretty_printed(text: str) -> bool:
    """Whether a line that is not JSON looks like a piece of a JSON document written over
    several lines: a bracket alone, a line that leaves an object or array open, or a
    ``"key": value`` line."""
    line = text.strip()
    return (
        line in _LONE_BRACKETS
        or line.endswith(("{", "[", ","))
        or _PROPERTY_LINE.match(line) is not None
    )


def _clip(line: str) -> str:
    return repr(line) if len(line) <= 40 else repr(line[:40]) + "…"


def _event(
    obj: dict[str, Any],
    raw: bytes,
    filename: str,
    number: int,
    upload_time_us: int,
    labels: dict[str, str],
    limits: Limits,
) -> Event:
    def error(reason: str) -> EventError:
        return EventError(filename, reason, number)

    # Only a \u escape can smuggle a lone surrogate into a str; protobuf would refuse it later.
    check_unicode = b"\\u" in raw
    raw_timestamp = obj.get(TIMESTAMP)
    event: Event = {TIMESTAMP: _timestamp(raw_timestamp, error, upload_time_us)}
    for key, value in obj.items():
        if value is None or key == TIMESTAMP:
            continue
        if not FIELD_NAME.fullmatch(key):
            raise error(
                f"invalid field name {key[:128]!r}: use 1 to 128 characters of A-Z, a-z, 0-9 "
                "and _.:/-, starting with a letter or '_'"
            )
        kind = type(value)
        if kind is str:
            if len(value) > limits.max_attribute_chars:
                raise error(
                    f"field {key!r} is {len(value)} characters long, more than the limit of "
                    f"{limits.max_attribute_chars}"
                )
            if check_unicode:
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise error(f"field {key!r} holds an unpaired surrogate") from None
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise error(f"field {key!r} is an integer outside the 64-bit range")
        elif kind is float:
            if not math.isfinite(value):
                raise error(f"field {key!r} is not a finite number")
        elif kind is not bool:
            raise error(
                f"field {key!r} is {_describe(value)}: events are flat "
                "(string, number, bool or null)"
            )
        event[key] = value
    add_signature(event)
    event.update(labels)
    if len(event) > limits.max_fields_per_event:
        raise error(
            f"event has {len(event)} fields, more than the limit of {limits.max_fields_per_event}"
        )
    return event


def _timestamp(value: Any, error: Any, upload_time_us: int) -> int:
    if value is None:
        return upload_time_us
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError as err:
            raise error(f"invalid timestamp: {err}") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return epoch_seconds_to_us(value)
        except ValueError as err:
            raise error(f"invalid timestamp: {err}") from None
    raise error(
        f"invalid timestamp: {_describe(value)}; "
        "expected an RFC 3339 string or a number of epoch seconds"
    )
