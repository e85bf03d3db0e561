"""The string functions of computed columns on one Python string, as DuckDB 2.0 computes them:
case mapping one code point at a time, lengths and positions in code points, split_part's and
substring's edge cases, regular expressions by RE2. Storage applies them to a column's dictionary
(string_columns.py); the query service folds literals, lowers ILIKE patterns and checks regular
expressions with them, so both sides agree."""

from __future__ import annotations

import functools
import re
from typing import Any

import re2

# Code points that Python upper-cases into several (ß → SS, ﬁ → FI): DuckDB maps each code point
# to one, its simple mapping. Most stay as they are; the Greek small letters with a iota
# subscript take their title case (ᾳ → ᾼ), and ß becomes ẞ. test_computed checks every code
# point against DuckDB.
_UPPER_KEPT = (
    "\u0149\u01f0\u0390\u03b0\u0587\u1e96\u1e97\u1e98\u1e99\u1e9a\u1f50\u1f52\u1f54\u1f56"
    "\u1f88\u1f89\u1f8a\u1f8b\u1f8c\u1f8d\u1f8e\u1f8f\u1f98\u1f99\u1f9a\u1f9b\u1f9c\u1f9d"
    "\u1f9e\u1f9f\u1fa8\u1fa9\u1faa\u1fab\u1fac\u1fad\u1fae\u1faf\u1fb2\u1fb4\u1fb6\u1fb7"
    "\u1fbc\u1fc2\u1fc4\u1fc6\u1fc7\u1fcc\u1fd2\u1fd3\u1fd6\u1fd7\u1fe2\u1fe3\u1fe4\u1fe6"
    "\u1fe7\u1ff2\u1ff4\u1ff6\u1ff7\u1ffc\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06\ufb13"
    "\ufb14\ufb15\ufb16\ufb17"
)
_IOTA_SUBSCRIPT = [
    *map(chr, range(0x1F80, 0x1F88)),
    *map(chr, range(0x1F90, 0x1F98)),
    *map(chr, range(0x1FA0, 0x1FA8)),
    "\u1fb3",
    "\u1fc3",
    "\u1ff3",
]
_UPPER_SIMPLE = {
    **{c: c for c in _UPPER_KEPT},
    **{c: c.title() for c in _IOTA_SUBSCRIPT},
    "\u00df": "\u1e9e",
}
_UPPER_SPECIAL = re.compile("[" + re.escape("".join(_UPPER_SIMPLE)) + "]")
# Lower-casing: Python maps capital I with dot above (U+0130) to two code points, and a capital
# sigma ending a word to the final sigma (a rule that looks at the neighbours); DuckDB maps the
# first to i and every capital sigma to the small sigma (U+03C3).
_LOWER_SIMPLE = {"\u0130": "i", "\u03a3": "\u03c3"}
_LOWER_SPECIAL = re.compile("[\u0130\u03a3]")


def _upper_char(c: str) -> str:
    return _UPPER_SIMPLE.get(c) or c.upper()


def _lower_char(c: str) -> str:
    return _LOWER_SIMPLE.get(c) or c.lower()


def upper(s: str) -> str:
    if _UPPER_SPECIAL.search(s) is None:
        return s.upper()
    return "".join(map(_upper_char, s))


def lower(s: str) -> str:
    if _LOWER_SPECIAL.search(s) is None:
        return s.lower()
    return "".join(map(_lower_char, s))


def substr(s: str, start: int, length: int | None = None) -> str:
    """DuckDB's substring: `start` is 1-based, 0 is the position before the first character
    (so it takes one character less) and a negative start counts from the end; a negative
    length takes the characters before the start. Positions outside the string are cut off."""
    if start > 0:
        begin = start - 1
    elif start == 0:
        begin = -1
    else:
        begin = len(s) + start
    if length is None:
        end = len(s)
    elif length >= 0:
        end = begin + length
    else:
        begin, end = begin + length, begin
    begin, end = max(begin, 0), min(end, len(s))
    return s[begin:end] if begin < end else ""


def split_part(s: str, separator: str, index: int) -> str:
    """DuckDB's split_part: the index-th part (1-based; negative: from the end) of `s` split at
    `separator` (an empty one splits between characters); '' when there is no such part."""
    parts = s.split(separator) if separator else list(s)
    if index > 0 and index <= len(parts):
        return parts[index - 1]
    if index < 0 and -index <= len(parts):
        return parts[index]
    return ""


# As DuckDB compiles a pattern without options: case-sensitive, `.` not matching a newline, `^`
# and `$` at the ends of the string, UTF-8; its errors raised, not also written to stderr.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
# RE2's reasons for look-around ((?=, (?!, (?<=, (?<!) and back-references (\1, (?P=n), \k<n>),
# which a pattern written for Python or PCRE may use.
_NOT_RE2 = re.compile(r"invalid (perl operator: \(\?(<?[=!]|P$)|escape sequence: \\([1-9]|k))")


@functools.lru_cache(maxsize=256)
def regex(pattern: str) -> Any:
    """The pattern compiled by RE2, DuckDB's engine (its time is linear in the string's length:
    no backtracking, and `\\d \\w \\s \\b` are ASCII), cached: a plan's pattern is compiled
    once, not per segment. Raises ValueError with RE2's reason where RE2 refuses the pattern."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0]
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if _NOT_RE2.match(reason):
            reason += " (RE2's syntax, as in DuckDB: no look-around, no back-references)"
        raise ValueError(reason) from None


def regexp_matches(s: str, pattern: str) -> bool:
    """DuckDB's regexp_matches: the pattern matches somewhere in `s`."""
    # Bytes, not str: the wrapper then skips mapping the match's byte offsets back to characters.
    return regex(pattern).search(s.encode()) is not None
