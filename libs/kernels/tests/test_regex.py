"""regexp_matches against DuckDB 2.0: RE2's syntax and answers (ASCII classes, `.` and newlines,
case folding), its refusals, and time linear in the string where Python's `re` backtracks."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from flakehouse.kernels import text

CASES = [
    # Partial match, case-sensitive; `.` stops at a newline, `^` and `$` at the string's ends.
    ("test_login_1", "login"),
    ("test_login_1", "^login"),
    ("test_login_1", "_1$"),
    ("Login", "login"),
    ("Login", "(?i)login"),
    ("a\nb", "a.b"),
    ("a\nb", "(?s)a.b"),
    ("x\ny", "^y"),
    ("x\ny", "(?m)^y"),
    ("x\ny", "x$"),
    ("x\ny", "(?m)x$"),
    ("a\n", "a$"),
    ("a", r"a\z"),
    ("", ""),
    ("", ".*"),
    ("abc", ""),
    # \d \w \s \b are ASCII in RE2, where Python's re takes every script's digits and letters.
    ("\u0663", r"\d"),
    ("\u0663", r"\pN"),
    ("é", r"\w"),
    ("é", r"\bé"),
    ("é", r"\pL"),
    ("\u00a0", r"\s"),
    ("é", "[[:alpha:]]"),
    ("a", "[[:alpha:]]"),
    # Characters are code points (UTF-8), and case folding is Unicode's.
    ("é", "^.$"),
    ("é", r"^\C\C$"),
    ("É", "(?i)é"),
    ("k", "(?i)\u212a"),
    ("ß", "(?i)ẞ"),
    ("straße", "stra.e"),
    # RE2's own syntax: \Q…\E, (?P<name>…), non-greedy repetition, bounded repeats.
    ("a.", r"\Qa.\E"),
    ("ab", r"\Qa.\E"),
    ("ab", "(?P<first>a)b"),
    ("aaa", "a{2,}?"),
    ("ab", "(?U)a+b"),
    ("AB12", "^[A-Z]{2}[0-9]{2}$"),
    ("expected 3 but was 4", "expected [0-3]"),
    ("tests.api.TestLogin", r"^tests\.(api|ui)\.Test"),
]

REFUSED = [
    "a(",
    "(?=a)",
    "x(?!y)",
    "(?<=a)b",
    "(?<!a)b",
    r"(a)\1",
    "(?P<n>a)(?P=n)",
    r"a\Z",
    "a{1001}",
    "[z-a]",
    "a**",
]


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        yield connection


@pytest.mark.parametrize(("s", "pattern"), CASES)
def test_as_duckdb(db: duckdb.DuckDBPyConnection, s: str, pattern: str) -> None:
    row = db.execute("SELECT regexp_matches($1, $2)", [s, pattern]).fetchone()
    assert row is not None
    assert text.regexp_matches(s, pattern) is row[0]


@pytest.mark.parametrize("pattern", REFUSED)
def test_refused_as_by_duckdb(db: duckdb.DuckDBPyConnection, pattern: str) -> None:
    with pytest.raises(duckdb.Error) as refused:
        db.execute("SELECT regexp_matches('a', $1)", [pattern])
    with pytest.raises(ValueError) as ours:
        text.regex(pattern)
    # RE2's reason, as DuckDB gives it (whose older RE2 quotes less of the pattern at times).
    assert str(ours.value).split(":")[0] in str(refused.value)


def test_python_only_syntax_says_why() -> None:
    for pattern in ["(?=a)", "(?<!a)b", r"(a)\1", "(?P<n>a)(?P=n)"]:
        with pytest.raises(ValueError, match="no look-around, no back-references"):
            text.regex(pattern)
    with pytest.raises(ValueError) as caught:
        text.regex("a(")
    assert str(caught.value) == "missing ): a("


def test_no_catastrophic_backtracking() -> None:
    """Python's re tries 2^n ways to split the a's before failing (minutes at 30); RE2 reads
    the string once. A hang here fails by the suite's timeout."""
    assert not text.regexp_matches("a" * 100_000 + "!", "(a+)+$")
    assert not text.regexp_matches("a" * 100_000 + "!", "^(a|aa)*$")
    assert text.regexp_matches("a" * 100_000, "(a+)+$")
