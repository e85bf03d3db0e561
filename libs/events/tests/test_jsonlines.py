"""JSON lines to events: accepted forms, and one clear error (line and field) for each bad input."""

from __future__ import annotations

import io

import pytest

from flakehouse.events.errors import EventError
from flakehouse.events.jsonlines import parse_json_lines, parse_json_lines_all
from flakehouse.events.model import Event, Limits

UPLOAD = 1_700_000_000_000_000


def parse(text: str | bytes, **kwargs: object) -> list[Event]:
    data = text.encode() if isinstance(text, str) else text
    return parse_json_lines_all(
        io.BytesIO(data),
        filename="e.jsonl",
        upload_time_us=UPLOAD,
        **kwargs,  # type: ignore[arg-type]
    )


def rejected(text: str | bytes, **kwargs: object) -> EventError:
    with pytest.raises(EventError) as caught:
        parse(text, **kwargs)
    assert caught.value.filename == "e.jsonl"
    return caught.value


def test_flat_scalars_and_blank_lines() -> None:
    events = parse(
        '{"timestamp": "2026-11-01T12:00:00.123456Z", "s": "x", "i": -3, "f": 1.5, "b": true}\n'
        "\n   \n"
        '{"s": "y", "gone": null}\n'
    )
    assert events == [
        {"timestamp": 1793534400123456, "s": "x", "i": -3, "f": 1.5, "b": True},
        {"timestamp": UPLOAD, "s": "y"},
    ]
    assert type(events[0]["i"]) is int and type(events[0]["b"]) is bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"2026-11-01T12:00:00Z"', 1793534400000000),
        ('"2026-11-01T13:00:00+01:00"', 1793534400000000),
        ('"2026-11-01 12:00:00"', 1793534400000000),
        ('"2026-11-01T12:00:00 UTC"', 1793534400000000),
        ("1793534400", 1793534400000000),
        ("1793534400.25", 1793534400250000),
        ("0", 0),
        ("-1.5", -1500000),
        ("null", UPLOAD),
    ],
)
def test_timestamp_forms(value: str, expected: int) -> None:
    (event,) = parse(f'{{"timestamp": {value}, "x": 1}}')
    assert event["timestamp"] == expected


def test_no_timestamp_means_upload_time() -> None:
    assert parse('{"x": 1}') == [{"timestamp": UPLOAD, "x": 1}]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"a": {"b": 1}}', ["field 'a' is an object", "flat"]),
        ('{"a": [1, 2]}', ["field 'a' is an array"]),
        ('{"bad name": 1}', ["invalid field name 'bad name'"]),
        ('{"1st": 1}', ["invalid field name '1st'"]),
        ('{"": 1}', ["invalid field name ''"]),
        ("[1, 2]", ["expected a JSON object, got an array"]),
        ('"text"', ["expected a JSON object, got a str"]),
        ("42", ["expected a JSON object, got a int"]),
        ('{"a": 1,}', ["invalid JSON"]),
        ("{'a': 1}", ["invalid JSON"]),
        ('{"a": 1, "a": 2}', ["field 'a' appears twice"]),
        ('{"a": NaN}', ["NaN is not a valid value"]),
        ('{"a": -Infinity}', ["-Infinity is not a valid value"]),
        ('{"a": 1e999}', ["field 'a' is not a finite number"]),
        ('{"a": 9223372036854775808}', ["field 'a' is an integer outside the 64-bit range"]),
        ('{"a": "\\ud800"}', ["field 'a' holds an unpaired surrogate"]),
        ('{"timestamp": "yesterday"}', ["invalid timestamp", "yesterday"]),
        ('{"timestamp": true}', ["invalid timestamp: a bool"]),
        ('{"timestamp": {"s": 1}}', ["invalid timestamp: an object"]),
        ('{"timestamp": 1793534400000}', ["invalid timestamp", "milliseconds"]),
        ('{"timestamp": "10000-01-01T00:00:00"}', ["invalid timestamp"]),
    ],
)
def test_errors_name_the_line_and_the_reason(line: str, words: list[str]) -> None:
    err = rejected('{"ok": 1}\n\n' + line + "\n")
    assert err.line == 3
    for word in words:
        assert word in err.reason
    assert str(err) == f"e.jsonl:3: {err.reason}"


def test_boundary_int64_values_are_accepted() -> None:
    (event,) = parse('{"lo": -9223372036854775808, "hi": 9223372036854775807}')
    assert event["lo"] == -(2**63) and event["hi"] == 2**63 - 1


def test_invalid_utf8_is_rejected() -> None:
    err = rejected(b'{"a": "ok"}\n{"a": "\xff"}\n')
    assert err.line == 2 and "not valid UTF-8" in err.reason


def test_utf8_bom_and_crlf() -> None:
    events = parse(b'\xef\xbb\xbf{"a": "\xc3\xa9"}\r\n{"a": 2}\r\n')
    assert [e["a"] for e in events] == ["é", 2]


def test_deep_nesting_is_rejected_cleanly() -> None:
    err = rejected('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert err.line == 1


def test_long_string_is_rejected() -> None:
    limits = Limits(max_attribute_chars=10)
    assert parse('{"a": "0123456789"}', limits=limits)[0]["a"] == "0123456789"
    err = rejected('{"a": "0123456789X"}', limits=limits)
    assert "field 'a' is 11 characters long" in err.reason


def test_line_length_limit() -> None:
    limits = Limits(max_line_bytes=64)
    err = rejected('{"a": 1}\n{"a": "' + "x" * 100 + '"}\n', limits=limits)
    assert err.line == 2 and "longer than 64 bytes" in err.reason


def test_file_size_limit() -> None:
    data = '{"a": 1}\n' * 100
    err = rejected(data, limits=Limits(max_file_bytes=len(data) - 1))
    assert "larger than" in err.reason
    assert len(parse(data, limits=Limits(max_file_bytes=len(data)))) == 100


def test_fields_per_event_limit_counts_timestamp_and_labels() -> None:
    line = "{" + ", ".join(f'"f{i}": {i}' for i in range(9)) + "}"
    limits = Limits(max_fields_per_event=10)
    assert len(parse(line, limits=limits)[0]) == 10
    err = rejected(line, limits=limits, labels={"branch": "main"})
    assert "11 fields" in err.reason


def test_a_string_message_gets_a_signature_unless_the_event_has_its_own() -> None:
    events = parse(
        "\n".join(
            [
                '{"status": "failed", "message": "assert 41 == 42"}',
                '{"status": "failed", "message": "assert 41 == 42", "signature": "mine"}',
                '{"status": "failed", "message": "assert 41 == 42", "signature": 7}',
                '{"status": "failed", "message": "assert 41 == 42", "signature": null}',
                '{"status": "failed", "message": 42}',
                '{"status": "failed", "message": " \\t "}',
                '{"status": "passed"}',
                # A float this large sends the line to the standard library's reading.
                '{"status": "failed", "message": "assert 41 == 42", "big": 1e19}',
            ]
        )
    )
    assert [e.get("signature") for e in events] == [
        "assert <n> == <n>",
        "mine",
        7,
        "assert <n> == <n>",
        None,
        None,
        None,
        "assert <n> == <n>",
    ]


def test_the_signature_counts_toward_the_fields_limit() -> None:
    limits = Limits(max_fields_per_event=4)
    assert len(parse('{"message": "m", "a": 1}', limits=limits)[0]) == 4
    err = rejected('{"message": "m", "a": 1, "b": 2}', limits=limits)
    assert "5 fields, more than the limit of 4" in err.reason


def test_labels_are_added_and_win() -> None:
    events = parse('{"branch": "from-file", "x": 1}\n{"x": 2}', labels={"branch": "main"})
    assert [e["branch"] for e in events] == ["main", "main"]


def test_bad_labels_fail_before_reading() -> None:
    with pytest.raises(ValueError, match="'timestamp'"):
        parse_json_lines(io.BytesIO(b""), filename="e", upload_time_us=0, labels={"timestamp": "x"})


def test_a_label_may_not_be_called_signature() -> None:
    with pytest.raises(ValueError, match="'signature'"):
        parse("{}", labels={"signature": "x"})


def test_empty_file_gives_no_events() -> None:
    assert parse("") == []
    assert parse("\n\n") == []


def test_streaming_yields_before_a_later_error() -> None:
    stream = parse_json_lines(
        io.BytesIO(b'{"a": 1}\n{"a": [\n'), filename="e.jsonl", upload_time_us=UPLOAD
    )
    assert next(stream)["a"] == 1
    with pytest.raises(EventError):
        next(stream)


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        ('{\n  "a": 1,\n  "b": 2\n}\n', 1, "'{'"),
        ('[\n  {"a": 1},\n  {"a": 2}\n]\n', 1, "'['"),
        ('{"a": 1}\n{"b": 2,\n "c": 3}\n', 2, "'{\"b\": 2,'"),
        ('{"a": 1}\n{\n"b": 2}\n', 2, "'{'"),
        ('[{"a": 1},\n {"a": 2}]\n', 1, "'[{\"a\": 1},'"),
        ('{"a": {\n  "b": 1}}\n', 1, "'{\"a\": {'"),
    ],
)
def test_a_pretty_printed_file_is_told_one_object_per_line(
    text: str, line: int, shown: str
) -> None:
    err = rejected(text)
    assert err.line == line
    assert err.reason.startswith(
        f"expected one JSON object per line, but line {line} is {shown}: the file looks "
        "pretty-printed"
    )
    assert "jq -c" in err.reason


@pytest.mark.parametrize("line", ['  "name": "t",', '"name": "t"', "}", "},", "]", '  "a" : {'])
def test_a_piece_of_a_pretty_printed_object_is_recognised(line: str) -> None:
    err = rejected('{"ok": 1}\n' + line + "\n")
    assert err.line == 2 and "expected one JSON object per line" in err.reason


@pytest.mark.parametrize("line", ['{"a": 1 "b": 2}', '{"a": 1,}', "{'a': 1}", '{"a": tru}'])
def test_a_broken_line_is_not_called_pretty_printed(line: str) -> None:
    err = rejected(line)
    assert err.reason.startswith("invalid JSON: ")
