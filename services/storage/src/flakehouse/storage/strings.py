"""String predicates over a segment's sorted dictionaries: comparison by binary search, and SQL
LIKE, which looks only at the entries in its literal prefix's range and finds the pattern's
longest literal piece in all of them at once."""

from __future__ import annotations

import re
from itertools import repeat

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.storage.segment import ColumnView

Mask = npt.NDArray[np.bool_]


def string_compare(col: ColumnView, op: int, literal: str) -> Mask:
    """Compares a string column with a literal by binary search in its sorted dictionary."""
    assert col.codes is not None and col.dictionary is not None
    codes = col.codes
    lo = int(np.searchsorted(col.dictionary, literal, side="left"))
    hi = int(np.searchsorted(col.dictionary, literal, side="right"))
    if op == plan_pb2.COMPARE_OP_EQ:
        return codes == lo if hi > lo else np.zeros(len(codes), dtype=bool)
    if op == plan_pb2.COMPARE_OP_NE:
        return codes != lo if hi > lo else np.ones(len(codes), dtype=bool)
    if op == plan_pb2.COMPARE_OP_LT:
        return codes < lo
    if op == plan_pb2.COMPARE_OP_LE:
        return codes < hi
    if op == plan_pb2.COMPARE_OP_GT:
        return codes >= hi
    return codes >= lo


def _like_regex(pattern: str) -> re.Pattern[str]:
    # SQL LIKE without an escape character (DuckDB's default): % any run, _ any one character.
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def literal_prefix(pattern: str) -> str:
    """The characters before the first wildcard."""
    for i, c in enumerate(pattern):
        if c in "%_":
            return pattern[:i]
    return pattern


_MAX_CHAR = chr(0x10FFFF)


def _prefix_bound(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: there is none)."""
    stripped = prefix.rstrip(_MAX_CHAR)
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


def _like_match(strings: list[str], pattern: str, regex: re.Pattern[str]) -> Mask:
    """`regex` (the pattern's) full-matched against each string, with few Python steps per
    string: a string can only match if it contains the pattern's longest literal piece, and
    that piece is found for all strings at once by splitting their concatenation at it."""
    pieces = [p for p in re.split("[%_]", pattern) if p]
    if not pieces:
        # Only wildcards: a length test (`_` is one character, `%` any run).
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
        wanted = pattern.count("_")
        return lengths >= wanted if "%" in pattern else lengths == wanted
    key = max(pieces, key=len)
    candidate = np.zeros(len(strings), dtype=bool)
    sep = "\x00"
    text = sep.join(strings)
    if sep in key:
        # Occurrences could span entries and hide one: every string is a candidate.
        candidate[:] = True
    elif text.count(sep) == len(strings) - 1:
        # No string holds the separator, and the key does not: each occurrence lies in one
        # entry, whose number is the count of separators before it. Splitting at the
        # occurrences (left to right, not overlapping) gives those counts part by part.
        parts = text.split(key)
        seps = np.fromiter(map(str.count, parts[:-1], repeat(sep)), np.int64, len(parts) - 1)
        candidate[np.cumsum(seps)] = True
    else:
        # Entry i starts at starts[i] (a separator after each), occurrences at `at`.
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
        starts = np.cumsum(lengths + 1) - (lengths + 1)
        parts = text.split(key)
        gaps = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))[:-1]
        at = np.cumsum(gaps) + len(key) * np.arange(len(gaps))
        candidate[np.searchsorted(starts, at, side="right") - 1] = True
    if pattern == f"%{key}%":
        return candidate
    out = np.zeros(len(strings), dtype=bool)
    for i in np.flatnonzero(candidate).tolist():
        out[i] = regex.fullmatch(strings[i]) is not None
    return out


def like_entries(
    dictionary: npt.NDArray[np.object_], pattern: str, regexes: dict[str, re.Pattern[str]]
) -> Mask:
    """Which entries of a sorted dictionary match `pattern`. Entries outside the range of its
    literal prefix are out without a look. `regexes` caches compiled patterns across calls."""
    out = np.zeros(len(dictionary), dtype=bool)
    prefix = literal_prefix(pattern)
    rest = pattern[len(prefix) :]
    lo, hi = 0, len(dictionary)
    if prefix:
        lo = int(np.searchsorted(dictionary, prefix, side="left"))
        bound = _prefix_bound(prefix)
        if bound is not None:
            hi = int(np.searchsorted(dictionary, bound, side="left"))
    if lo >= hi:
        return out
    if not rest:
        out[lo] = dictionary[lo] == prefix
    elif set(rest) == {"%"}:
        out[lo:hi] = True
    else:
        regex = regexes.get(pattern)
        if regex is None:
            regex = regexes[pattern] = _like_regex(pattern)
        out[lo:hi] = _like_match(dictionary[lo:hi].tolist(), pattern, regex)
    return out
