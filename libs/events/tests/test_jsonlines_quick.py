"""The quick (orjson) reading of JSON lines against the exact one (the standard library's): the
same event or the same error for every line, repeated keys above all."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flakehouse.events.errors import EventError
from flakehouse.events.jsonlines import _event, _load, _quick, parse_json_lines_all
from flakehouse.events.model import Event, Limits

UPLOAD = 1_700_000_000_000_000
DEFAULT = Limits()
SMALL = Limits(max_attribute_chars=6, max_fields_per_event=4)


def typed(event: Event) -> dict[str, tuple[type, Any]]:
    """The event with each value's type: 1, 1.0 and True are equal in Python, not in a column."""
    return {name: (type(value), value) for name, value in event.items()}


def exact(
    raw: bytes, labels: dict[str, str] | None = None, limits: Limits = DEFAULT, number: int = 1
) -> tuple[str, Any]:
    """What the standard library's path makes of one line: ("event", …) or ("error", …)."""
    try:
        obj = _load(raw, "e.jsonl", number)
        return "event", typed(_event(obj, raw, "e.jsonl", number, UPLOAD, labels or {}, limits))
    except EventError as err:
        return "error", str(err)


def quick(
    raw: bytes, labels: dict[str, str] | None = None, limits: Limits = DEFAULT
) -> Event | None:
    return _quick(UPLOAD, labels or {}, limits)(raw)


def parse_line(raw: bytes, **kwargs: Any) -> tuple[str, Any]:
    """What the public parser makes of a file of that one line."""
    try:
        (event,) = parse_json_lines_all(
            io.BytesIO(raw), filename="e.jsonl", upload_time_us=UPLOAD, **kwargs
        )
        return "event", typed(event)
    except EventError as err:
        return "error", str(err)


TYPICAL = [
    b'{"timestamp": "2026-11-02T10:00:00.000000Z", "suite": "suite_68", "name": "test_2067", '
    b'"status": "passed", "duration": 0.0143, "retries": 0, "flaky": false, "pipeline_id": 12}',
    b'{"timestamp":"2026-11-02T10:00:00Z","name":"t","message":"C:\\\\tmp\\\\x \\"quoted\\""}\n',
    b'{"timestamp": 1793534400.25, "name": "\\u00e9t\\u00e9", "gone": null}\r\n',
    b'{"name": "t", "big": 9223372036854775807, "small": -9223372036854775808, "f": 9e18}',
    b'{"a" : 1, "b"\t:\t"x"}',
]


@pytest.mark.parametrize("raw", TYPICAL)
def test_typical_lines_take_the_quick_path_and_agree(raw: bytes) -> None:
    # Were these to fall back, the benchmark would measure the standard library.
    event = quick(raw)
    assert event is not None
    assert ("event", typed(event)) == exact(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": "x", "a": 1}',
        b'{"a" : 1, "a" : 2}',
        b'{"a"\t:1,"a"\r :2}',
        b'{"a": 1, "\\u0061": 2}',
        # A value holding '":' with a backslash in the line: the count is not fooled either way.
        b'{"a" : "\\":", "a": 1}',
        b'{"a": "\\\\", "a": "\\\\"}',
        b'{"k": "a\\"b", "k": 1}',
        b'{"timestamp": "2026-11-01T12:00:00Z", "s": "x", "s": "y"}',
        b'{"n": null, "n": 1}',
        b'{"a": [1, "x"], "a": 1}',
        b'{"a": {"b": 1}, "a": 2}',
    ],
)
def test_repeated_keys_are_refused(raw: bytes) -> None:
    assert quick(raw) is None
    kind, message = parse_line(raw)
    assert kind == "error" and "appears twice" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"msg": "expected \\"a\\": 1", "n": 2}', {"msg": 'expected "a": 1', "n": 2}),
        (b'{"msg": "\\":\\":\\":"}', {"msg": '":":":'}),
        (b'{"k": "a\\"b"}', {"k": 'a"b'}),
        (b'{"k": "\\\\"}', {"k": "\\"}),
        (b'{"k": "a\\\\\\":"}', {"k": 'a\\":'}),
    ],
)
def test_values_holding_quotes_and_colons_are_kept(raw: bytes, expected: Event) -> None:
    kind, event = parse_line(raw)
    assert kind == "event"
    assert event == typed({"timestamp": UPLOAD, **expected})


def test_an_escaped_quote_in_a_key_is_an_invalid_name() -> None:
    assert parse_line(b'{"k\\"": 1}') == ("error", "e.jsonl:1: " + _invalid_name('k"'))


def _invalid_name(name: str) -> str:
    return (
        f"invalid field name {name!r}: use 1 to 128 characters of A-Z, a-z, 0-9 and _.:/-, "
        "starting with a letter or '_'"
    )


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        # orjson reads these integers as floats: the exact path must see them.
        (b'{"a": 18446744073709551616}', "field 'a' is an integer outside the 64-bit range"),
        (b'{"a": -9223372036854775809}', "field 'a' is an integer outside the 64-bit range"),
        (b'{"a": 18446744073709551615}', "field 'a' is an integer outside the 64-bit range"),
        (b'{"timestamp": 18446744073709551616}', "epoch seconds 18446744073709551616 is outside"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "an integer too long to read"),
    ],
)
def test_integers_beyond_64_bits_are_refused(raw: bytes, words: str) -> None:
    kind, message = parse_line(raw)
    assert kind == "error" and words in message


def test_large_floats_stay_floats() -> None:
    kind, event = parse_line(b'{"a": 1e19, "b": -9.3e18, "c": 18446744073709551616.0}')
    assert kind == "event"
    assert event["a"] == (float, 1e19) and event["c"] == (float, 2.0**64)


# Generated lines: keys valid, invalid and repeated; every JSON value, scalars near every
# boundary; written with the spacings and escapes that real writers use, and then some.
KEYS = st.sampled_from(
    ["a", "b", "timestamp", "message", "signature", "x.y", "bad name", "1st", "", "é", 'q"', "a:b"]
)
TIMESTAMPS = st.sampled_from(
    ["2026-11-01T12:00:00Z", "2026-11-01 13:00:00+01:00", "yesterday", "10000-01-01T00:00:00"]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, 1793534400]),
    st.floats(),
    st.sampled_from([1e19, 2.0**63, -(2.0**63), 1e308, 5e-324, 1793534400.25, -0.0]),
    st.text(max_size=8),
    st.sampled_from(['":', '\\":', 'a": 1', '"', "\\", "\ud800", "\udc00", "😀", "x" * 7]),
    TIMESTAMPS,
)
GOOD_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.sampled_from(['":', '\\":', '"', "\\", "😀", "2026-11-01T12:00:00Z", "assert 1 == 2"]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=2),
    st.dictionaries(KEYS, SCALARS, max_size=2),
)
GOOD_KEYS = st.sampled_from(
    ["a", "b", "c", "timestamp", "message", "signature", "x.y", "a:b", "_", "prop.os"]
)
PAIRS = st.one_of(
    st.lists(st.tuples(KEYS, VALUES), max_size=6),
    # Mostly good lines, so that the quick path's answers are compared too.
    st.lists(st.tuples(GOOD_KEYS, GOOD_SCALARS), max_size=6, unique_by=lambda pair: pair[0]),
    st.lists(st.tuples(GOOD_KEYS, GOOD_SCALARS), max_size=4),
)


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    ascii_only = draw(st.booleans())
    colon = draw(st.sampled_from([":", ": ", " : ", "\t:", ":\t"]))
    comma = draw(st.sampled_from([",", ", ", " ,"]))
    inner = comma.join(
        json.dumps(key, ensure_ascii=ascii_only)
        + colon
        + json.dumps(value, ensure_ascii=ascii_only)
        for key, value in draw(PAIRS)
    )
    text = draw(st.sampled_from(["{%s}"] * 6 + [" {%s} ", "{%s}\r\n", "[{%s}]", "{%s}}", "{%s,}"]))
    # surrogatepass: a lone surrogate written raw is invalid UTF-8, which must be refused too.
    return (text % inner).encode("utf-8", "surrogatepass")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=lines(),
    labels=st.sampled_from([{}, {"branch": "main"}, {"a": "label"}]),
    limits=st.sampled_from([DEFAULT, SMALL]),
)
@example(raw=b'{"a" : "\\":", "a": 1}', labels={}, limits=DEFAULT)
@example(raw=b'{"a": 1, "\\u0061": 2}', labels={}, limits=DEFAULT)
def test_quick_path_agrees_with_the_exact_path(
    raw: bytes, labels: dict[str, str], limits: Limits
) -> None:
    expected = exact(raw, labels, limits)
    event = quick(raw, labels, limits)
    if event is not None:
        assert ("event", typed(event)) == expected
    assert parse_line(raw, labels=labels, limits=limits) == expected


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=40).filter(lambda raw: b"\n" not in raw and raw.strip()))
def test_any_bytes_give_the_exact_paths_answer(raw: bytes) -> None:
    # The second line of the file: a BOM is skipped on the first line only.
    try:
        _, event = parse_json_lines_all(
            io.BytesIO(b"{}\n" + raw), filename="e.jsonl", upload_time_us=UPLOAD
        )
        answer: tuple[str, Any] = "event", typed(event)
    except EventError as err:
        answer = "error", str(err)
    assert answer == exact(raw, number=2)
