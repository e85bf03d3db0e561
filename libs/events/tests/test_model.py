"""Names, labels, limits and the error type."""

from __future__ import annotations

import pickle

import pytest

from flakehouse.events.errors import EventError
from flakehouse.events.model import (
    Limits,
    apply_labels,
    parse_label,
    truncate_text,
    validate_dataset_name,
    validate_field_name,
)


@pytest.mark.parametrize("name", ["ci", "0", "nightly-builds_2", "a" * 63])
def test_valid_dataset_names(name: str) -> None:
    assert validate_dataset_name(name) == name


@pytest.mark.parametrize("name", ["", "CI", "-ci", "_ci", "c.i", "c i", "a" * 64, "ci\n"])
def test_invalid_dataset_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid dataset name"):
        validate_dataset_name(name)


@pytest.mark.parametrize("name", ["a", "_x", "prop.java.version", "k8s:pod/name-1", "A" * 128])
def test_valid_field_names(name: str) -> None:
    assert validate_field_name(name) == name


@pytest.mark.parametrize("name", ["", "1a", ".a", "a b", "a=b", "é", "A" * 129, "a\n"])
def test_invalid_field_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid field name"):
        validate_field_name(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("branch=main", ("branch", "main")),
        ("commit=abc=def", ("commit", "abc=def")),
        ("ci.job/id=42", ("ci.job/id", "42")),
        ("note=with spaces", ("note", "with spaces")),
    ],
)
def test_parse_label(text: str, expected: tuple[str, str]) -> None:
    assert parse_label(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("branch", "expected key=value"),
        ("=main", "key before '=' is empty"),
        ("branch=", "value is empty"),
        ("my branch=x", "must be a valid field name"),
        ("timestamp=1", "collides with a field of the event schema"),
        ("status=passed", "collides"),
        ("flaky=x", "collides"),
        ("prop.x=1", "collides"),
        ("bad=\udcff", "not valid Unicode"),
    ],
)
def test_bad_labels(text: str, words: str) -> None:
    with pytest.raises(ValueError, match="invalid label") as caught:
        parse_label(text)
    assert words in str(caught.value)


def test_apply_labels() -> None:
    event = {"timestamp": 1, "name": "t", "branch": "old"}
    result = apply_labels(event, {"branch": "main", "job": "build"})
    assert result is event
    assert event == {"timestamp": 1, "name": "t", "branch": "main", "job": "build"}
    with pytest.raises(ValueError, match="'suite'"):
        apply_labels(event, {"suite": "x"})


def test_limits_are_validated_and_frozen() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        Limits(max_depth=0)
    with pytest.raises(ValueError, match="max_text_chars"):
        Limits(max_text_chars=True)
    limits = Limits()
    with pytest.raises(AttributeError):
        limits.max_depth = 3  # type: ignore[misc]


def test_truncate_text() -> None:
    assert truncate_text("abc", 3) == "abc"
    cut = truncate_text("x" * 100, 40)
    assert len(cut) == 40 and cut.endswith("… [truncated, 100 chars]")
    assert truncate_text("x" * 100, 5) == "xxxxx"  # no room for the marker
    assert truncate_text("x" * 10, 40, total=500).endswith("[truncated, 500 chars]")


def test_event_error() -> None:
    with_line = EventError("a.xml", "bad thing", 12)
    assert str(with_line) == "a.xml:12: bad thing"
    assert isinstance(with_line, ValueError)
    assert (with_line.filename, with_line.reason, with_line.line) == ("a.xml", "bad thing", 12)
    assert str(EventError("a.xml", "bad thing")) == "a.xml: bad thing"
    copy = pickle.loads(pickle.dumps(with_line))
    assert (copy.filename, copy.reason, copy.line, str(copy)) == (
        "a.xml",
        "bad thing",
        12,
        "a.xml:12: bad thing",
    )
