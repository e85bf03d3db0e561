"""Sizes, ages and limit numbers as the CLI reads and prints them."""

from __future__ import annotations

import pytest

from flakehouse.client.units import (
    parse_age,
    parse_count,
    parse_rate,
    parse_size,
    render_age,
    render_number,
    render_size,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("0", 0),
        ("500MiB", 500 * 1024**2),
        ("20GB", 20 * 1000**3),
        ("1.5GiB", 1610612736),
        ("1.5 GiB", 1610612736),
        ("20gb", 20 * 1000**3),
        ("20 Gi", 20 * 1024**3),
        ("1kB", 1000),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("2TB", 2 * 1000**4),
        ("2TiB", 2 * 1024**4),
        ("7B", 7),
        (".5KiB", 512),
        ("0.001kB", 1),
    ],
)
def test_sizes_in_decimal_and_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not a size"),
        ("abc", "not a size"),
        ("MiB", "not a size"),
        ("-5MiB", "negative"),
        ("-1", "negative"),
        ("20G", "unknown unit 'G'"),
        ("5 parsecs", "unknown unit 'parsecs'"),
        ("1.5", "fraction of a byte"),
        ("nan", "not a size"),
        ("20000PB", "larger than 16 EiB"),
    ],
)
def test_bad_sizes_name_the_value_and_show_examples(text: str, words: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_size(text)
    assert words in str(error.value)
    assert repr(text) in str(error.value)
    if "larger" not in words:
        assert "500MiB" in str(error.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("45s", 45),
        ("90m", 5400),
        ("12h", 43200),
        ("30d", 30 * 86400),
        ("2w", 14 * 86400),
        ("1d12h", 129600),
        (" 7d ", 7 * 86400),
    ],
)
def test_ages(text: str, seconds: int) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not an age"),
        ("30", "no unit"),
        ("30D", "lower case"),
        ("1.5h", "not an age"),
        ("-1d", "negative"),
        ("3x", "unknown unit 'x'"),
        ("3y", "unknown unit 'y'"),
        ("d", "not an age"),
    ],
)
def test_bad_ages_name_the_value_and_show_examples(text: str, words: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_age(text)
    assert words in str(error.value)
    assert repr(text) in str(error.value)
    assert "30d" in str(error.value)


def test_rates_and_counts() -> None:
    assert parse_rate("12.5") == 12.5
    assert parse_rate("0") == 0
    assert parse_count("4") == 4
    for bad in ("-1", "inf", "nan", "fast"):
        with pytest.raises(ValueError, match=r"0 for unlimited|not a number"):
            parse_rate(bad)
    for bad in ("-1", "1.5", "", "four", str(2**32)):
        with pytest.raises(ValueError):
            parse_count(bad)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1610612736, "1.5 GiB"),
        (500 * 1024**2, "500 MiB"),
        (20 * 1000**3, "18.6 GiB"),
        (1234567, "1.18 MiB"),
    ],
)
def test_sizes_for_humans(size: int, text: str) -> None:
    assert render_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (5400, "1h30m"),
        (43200, "12h"),
        (30 * 86400, "30d"),
        (90061, "1d1h1m1s"),
    ],
)
def test_ages_for_humans_read_back(seconds: int, text: str) -> None:
    assert render_age(seconds) == text
    assert parse_age(text) == seconds


def test_numbers_for_humans() -> None:
    assert [render_number(v) for v in (100.0, 12.5, 1.23456, 0.001234, 1500000.0)] == [
        "100",
        "12.5",
        "1.23",
        "0.00123",
        "1500000",
    ]
