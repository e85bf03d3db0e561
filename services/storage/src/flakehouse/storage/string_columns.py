"""String functions of computed columns (string_functions.py) over a segment's columns. With
literal other arguments a function runs once per dictionary entry, never per row, and what it
gave is remembered as long as the dictionary lives (sealed columns stay decoded in the store's
cache, so a repeated GROUP BY lower(name) computes nothing); otherwise once per distinct
combination of its arguments' values."""

from __future__ import annotations

import itertools
import operator
import sys
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels import text as strings
from flakehouse.storage.codec import object_array
from flakehouse.storage.segment import ColumnView
from flakehouse.storage.sparse import Column, align, dictionary_of, take


@dataclass(frozen=True)
class StringFunction:
    """A function of a string and further arguments of the types `args`, giving `result`."""

    apply: Callable[..., Any]
    result: int
    args: tuple[int, ...] = ()


FUNCTIONS: dict[int, StringFunction] = {
    plan_pb2.SCALAR_FUNCTION_LOWER: StringFunction(strings.lower, v.STRING),
    plan_pb2.SCALAR_FUNCTION_UPPER: StringFunction(strings.upper, v.STRING),
    plan_pb2.SCALAR_FUNCTION_LENGTH: StringFunction(len, v.INT),
    plan_pb2.SCALAR_FUNCTION_SUBSTR: StringFunction(strings.substr, v.STRING, (v.INT, v.INT)),
    plan_pb2.SCALAR_FUNCTION_SPLIT_PART: StringFunction(
        strings.split_part, v.STRING, (v.STRING, v.INT)
    ),
    plan_pb2.SCALAR_FUNCTION_REGEXP_MATCHES: StringFunction(
        strings.regexp_matches, v.BOOL, (v.STRING,)
    ),
}


@dataclass(frozen=True)
class Literal:
    """An argument that is the same on every row."""

    value: Any


Argument = Column | Literal

# Per dictionary (by id, dropped when the array is), per (function, literals): the results.
# No value may refer to the dictionary itself: that would keep it alive, and its entry with it.
_MEMO: dict[int, dict[tuple[Any, ...], Any]] = {}
_UNCHANGED = object()
"""The results of a string function that changed no string: the column is its own result."""


def _memo(dictionary: npt.NDArray[np.object_]) -> dict[tuple[Any, ...], Any]:
    key = id(dictionary)
    memo = _MEMO.get(key)
    if memo is None:
        memo = _MEMO[key] = {}
        weakref.finalize(dictionary, _MEMO.pop, key, None)
    return memo


def _encode(function: StringFunction, results: list[Any]) -> Any:
    """Results per entry as the column stores them: (dictionary, codes) for strings, else an
    array of ints or bools."""
    if function.result == v.STRING:
        return dictionary_of(results)
    return np.array(results, dtype=np.int64 if function.result == v.INT else np.bool_)


def _encode_entries(
    function: StringFunction, results: list[Any], dictionary: npt.NDArray[np.object_]
) -> Any:
    """`_encode` for results per entry of a sorted `dictionary`. Where the strings come out in
    the same order, distinct (lower() of strings already in lower case, or of one casing), the
    codes stay as they are: (new dictionary, None), or _UNCHANGED if no string changed."""
    if function.result == v.STRING and all(
        map(operator.lt, results, itertools.islice(results, 1, None))
    ):
        if results == dictionary.tolist():
            return _UNCHANGED
        return object_array(list(map(sys.intern, results))), None
    return _encode(function, results)


def _column(function: StringFunction, rows: Any, encoded: Any, codes: Any) -> ColumnView:
    """The column holding, on `rows`, the results numbered `codes` in `encoded`."""
    if function.result == v.STRING:
        dictionary, remap = encoded
        return ColumnView(
            rows, codes=codes if remap is None else remap[codes], dictionary=dictionary
        )
    return ColumnView(rows, values=encoded[codes])


def _per_entry(code: int, function: StringFunction, col: ColumnView, literals: list[Any]) -> Column:
    assert col.codes is not None and col.dictionary is not None
    memo = _memo(col.dictionary)
    key = (code, *literals)
    encoded = memo.get(key)
    if encoded is None:
        results = [function.apply(s, *literals) for s in col.dictionary.tolist()]
        encoded = memo[key] = _encode_entries(function, results, col.dictionary)
    if encoded is _UNCHANGED:
        return {v.STRING: col}
    return {function.result: _column(function, col.rows, encoded, col.codes)}


def _per_combination(
    function: StringFunction, col: ColumnView, args: Sequence[Argument], n: int
) -> Column:
    """The rows holding the string and every non-literal argument (of its type): each distinct
    combination of their values is computed once."""
    assert col.codes is not None and col.dictionary is not None
    kinds = function.args[: len(args)]
    columns: list[ColumnView] = [col]
    for arg, kind in zip(args, kinds, strict=True):
        if not isinstance(arg, Literal):
            other = arg.get(kind)
            if other is None or not other.count:
                return {}
            columns.append(other)
    rows, positions = align(columns, n)
    if not len(rows):
        return {}
    keys = [
        take(c.codes if c.codes is not None else c.values, at).astype(np.int64)  # type: ignore[arg-type]
        for c, at in zip(columns, positions, strict=True)
    ]
    combos, inverse = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    results = []
    for combo in combos.tolist():
        values = iter(combo[1:])
        call_args = [
            arg.value if isinstance(arg, Literal) else _decode(arg[kind], next(values))
            for arg, kind in zip(args, kinds, strict=True)
        ]
        results.append(function.apply(col.dictionary[combo[0]], *call_args))
    encoded = _encode(function, results)
    return {function.result: _column(function, rows, encoded, inverse.reshape(-1))}


def _decode(col: ColumnView, key: int) -> Any:
    return col.dictionary[key] if col.dictionary is not None else key


def evaluate(code: int, string: Column, args: Sequence[Argument], n: int) -> Column:
    """The string function `code` (a plan ScalarFunction) of the string values of `string`
    (other types give NULL) and `args`; a NULL literal argument gives NULL everywhere."""
    function = FUNCTIONS[code]
    col = string.get(v.STRING)
    if col is None or not col.count:
        return {}
    if any(isinstance(arg, Literal) and arg.value is None for arg in args):
        return {}
    if all(isinstance(arg, Literal) for arg in args):
        return _per_entry(code, function, col, [arg.value for arg in args])  # type: ignore[union-attr]
    return _per_combination(function, col, args, n)
