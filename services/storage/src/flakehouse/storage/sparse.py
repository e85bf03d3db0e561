"""Typed sparse columns as computed columns build them from others: constants, the rows present
in several columns at once, subsets, and the union of pieces holding disjoint rows."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.events import values as v
from flakehouse.storage.codec import object_array
from flakehouse.storage.segment import CODE_DTYPE, VALUE_DTYPES, ColumnView, Rows

Column = dict[int, ColumnView]
"""A field's or a computed column's values in one segment: a sparse column per type; a row
holds a value in one of them at most."""
Positions = npt.NDArray[np.intp] | None
"""Positions of some values of a column, None for all of them in order."""


def constant(value: Any, rows: Rows) -> Column:
    """`value` (a Python scalar, None for NULL) on every row of `rows`."""
    if value is None:
        return {}
    kind = v.type_of(value)
    n = len(rows)
    if kind == v.STRING:
        codes = np.zeros(n, dtype=CODE_DTYPE)
        return {kind: ColumnView(rows, codes=codes, dictionary=object_array([value]))}
    dtype = np.bool_ if kind == v.BOOL else VALUE_DTYPES[kind]
    return {kind: ColumnView(rows, values=np.full(n, value, dtype=dtype))}


def align(columns: Sequence[ColumnView], n: int) -> tuple[Rows, list[Positions]]:
    """The rows (ascending) holding a value in every one of `columns` (of a segment of n rows),
    and for each column the positions of those rows' values. A dense column's values are its
    rows, so lining it up with others costs no search."""
    sparse = [col for col in columns if col.count != n]
    if not sparse:
        return np.arange(n, dtype=np.intp), [None] * len(columns)
    rows: Rows = sparse[0].rows
    for col in sparse[1:]:
        if col.rows is not rows:
            rows = np.intersect1d(rows, col.rows, assume_unique=True)
    positions: list[Positions] = []
    for col in columns:
        if col.count == len(rows):
            positions.append(None)  # every value of the column takes part
        elif col.count == n:
            positions.append(rows.astype(np.intp, copy=False))
        else:
            positions.append(np.searchsorted(col.rows, rows))
    return rows, positions


def take(data: npt.NDArray[Any], positions: Positions) -> npt.NDArray[Any]:
    return data if positions is None else data[positions]


def subset(col: ColumnView, positions: Positions) -> ColumnView:
    """The values of `col` at `positions`, with their rows (a string column keeps its whole
    dictionary: entries no row uses are harmless)."""
    if positions is None:
        return col
    rows = col.rows[positions]
    if col.codes is not None:
        return ColumnView(rows, codes=col.codes[positions], dictionary=col.dictionary)
    assert col.values is not None
    return ColumnView(rows, values=col.values[positions])


def dictionary_of(strings: Sequence[str]) -> tuple[npt.NDArray[np.object_], npt.NDArray[Any]]:
    """A sorted dictionary of the distinct `strings`, and the code of each of them in it. The
    strings are interned, as decoded dictionaries' are: group keys are looked up in a dict
    across segments, and equal strings that are one object compare by identity."""
    if not strings:
        return object_array([]), np.zeros(0, dtype=CODE_DTYPE)
    dictionary, codes = np.unique(object_array(list(map(sys.intern, strings))), return_inverse=True)
    return dictionary, codes.reshape(-1).astype(CODE_DTYPE)


def union(pieces: Sequence[ColumnView]) -> ColumnView | None:
    """One column from columns of one type whose rows are disjoint (None if all are empty);
    strings from different dictionaries get their union."""
    pieces = [p for p in pieces if p.count]
    if len(pieces) <= 1:
        return pieces[0] if pieces else None
    rows = np.concatenate([p.rows.astype(np.intp, copy=False) for p in pieces])
    order = np.argsort(rows, kind="stable")
    if pieces[0].codes is None:
        values = np.concatenate([p.values for p in pieces if p.values is not None])
        return ColumnView(rows[order], values=values[order])
    first = pieces[0].dictionary
    if all(p.dictionary is first for p in pieces):
        dictionary = first
        codes = np.concatenate([p.codes for p in pieces if p.codes is not None])
    else:
        dictionaries = [p.dictionary for p in pieces if p.dictionary is not None]
        dictionary = np.unique(np.concatenate(dictionaries))
        codes = np.concatenate(
            [
                np.searchsorted(dictionary, p.dictionary).astype(CODE_DTYPE)[p.codes]
                for p in pieces
                if p.dictionary is not None and p.codes is not None
            ]
        )
    return ColumnView(rows[order], codes=codes[order].astype(CODE_DTYPE), dictionary=dictionary)


def assemble(pieces: dict[int, list[ColumnView]]) -> Column:
    """A column from pieces per type, the rows of all pieces disjoint."""
    out: Column = {}
    for kind, parts in pieces.items():
        col = union(parts)
        if col is not None:
            out[kind] = col
    return out
