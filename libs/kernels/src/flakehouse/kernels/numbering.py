"""Numbers for group-by key values and for combinations of them, in order of first appearance.

Storage numbers the distinct key values of each segment it aggregates, the query service the key
columns of each partial result it merges; both go through `GroupKeys`, so that a group is the
same group on both sides: values of different types are different values (1, 1.0, '1' and TRUE
come from different columns though Python calls them equal), every NaN is one value and -0.0 is
0.0. Numbers (ints, floats by their bits, bools) are looked up all at once with numpy in a
sorted array of the known ones, or in a dict while they are few (`IntTable`); strings and null
with one dict lookup per value.

Every structure can roll back to a checkpoint, so a caller that finds a partial result invalid
after numbering it forgets it wholly.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice, repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.kernels.arrays import Index

PACKED_BITS = 63
"""Bits of the int64 into which the value numbers of several keys are packed, while they fit."""


def number_in_dict(table: dict[Any, int], values: list[Any], start: int) -> tuple[Index, list[Any]]:
    """The number of each value in `table`, adding the values it lacks numbered from `start` in
    order of first appearance; returns the numbers and the values added. One dict lookup per
    value (dicts keep insertion order: the values added are its last entries)."""
    if not table:
        ids, missing, new = None, None, values
    else:
        ids = np.fromiter(map(table.get, values, repeat(-1)), dtype=np.intp, count=len(values))
        missing = np.flatnonzero(ids < 0)
        if not len(missing):
            return ids, []
        new = [values[i] for i in missing.tolist()]
    fresh = list(dict.fromkeys(new))
    table.update(zip(fresh, range(start, start + len(fresh)), strict=True))
    found = np.fromiter(map(table.__getitem__, new), dtype=np.intp, count=len(new))
    if ids is None:
        return found, fresh
    ids[missing] = found
    return ids, fresh


def forget_last(table: dict[Any, int], count: int) -> None:
    """Removes the last `count` entries added to `table`."""
    for key in list(islice(reversed(table), count)):
        del table[key]


SMALL_TABLE = 4096
"""Keys an IntTable keeps in a dict before it moves them into sorted arrays."""
SMALL_INPUT = 64
"""Keys in one call that a small IntTable looks up in its dict rather than with numpy."""


class IntTable:
    """Numbers for int64 keys. Many keys are looked up all at once with numpy in a sorted array
    of the known ones: several times faster than a dict lookup per key. While the table and the
    keys of a call are few, a dict does it instead: numpy's fixed cost per call would dominate
    (storage numbers a segment's few time buckets once per segment). Updates replace the
    arrays, so a checkpoint (`state`) is cheap."""

    def __init__(self) -> None:
        self._small: dict[int, int] | None = {}
        self._keys = np.zeros(0, dtype=np.int64)  # ascending, once not small
        self._numbers = np.zeros(0, dtype=np.intp)

    @property
    def state(self) -> Any:
        if self._small is not None:
            return dict(self._small)
        return self._keys, self._numbers

    @state.setter
    def state(self, state: Any) -> None:
        if isinstance(state, dict):
            self._small = dict(state)
        else:
            self._small = None
            self._keys, self._numbers = state

    def number(self, keys: npt.NDArray[np.int64], start: int) -> tuple[Index, Index]:
        """The number of each key, adding the new ones numbered from `start` in order of first
        appearance; returns the numbers and where each new key first appears, in number
        order."""
        small = self._small
        if small is not None and len(keys) <= SMALL_INPUT and len(small) < SMALL_TABLE:
            ids = np.empty(len(keys), dtype=np.intp)
            first: list[int] = []
            for i, key in enumerate(keys.tolist()):
                number = small.get(key)
                if number is None:
                    number = small[key] = start + len(first)
                    first.append(i)
                ids[i] = number
            return ids, np.array(first, dtype=np.intp)
        if small is not None:
            self._small = None
            order = sorted(small.items())
            self._keys = np.array([key for key, _ in order], dtype=np.int64)
            self._numbers = np.array([number for _, number in order], dtype=np.intp)
        known, numbers = self._keys, self._numbers
        at = np.searchsorted(known, keys)
        found = at < len(known)
        found[found] = known[at[found]] == keys[found]
        ids = np.empty(len(keys), dtype=np.intp)
        ids[found] = numbers[at[found]]
        new = np.flatnonzero(~found)
        if not len(new):
            return ids, new
        fresh, first_at, inverse = np.unique(keys[new], return_index=True, return_inverse=True)
        rank = np.empty(len(fresh), dtype=np.intp)
        rank[np.argsort(first_at, kind="stable")] = np.arange(len(fresh))
        ids[new] = start + rank[inverse.reshape(-1)]
        where = np.searchsorted(known, fresh)
        self._keys = np.insert(known, where, fresh)
        self._numbers = np.insert(numbers, where, start + rank)
        return ids, new[np.sort(first_at)]


def int_keys(values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Int, float or bool values as int64 keys, equal where the values are the same value:
    floats by their bits, with -0.0 as 0.0 and every NaN as one."""
    if values.dtype == np.int64:
        return values
    if values.dtype.kind != "f":
        return values.astype(np.int64)
    floats = values.astype(np.float64) + 0.0  # a copy, and -0.0 + 0.0 is 0.0
    floats[np.isnan(floats)] = np.nan
    return floats.view(np.int64)


class ValueNumbers:
    """Numbers for the values of one group-by key, in order of first appearance: `cells[i]` and
    `kinds[i]` are the value numbered i and its type. A table per type; numbers (numpy arrays)
    are looked up with an `IntTable`, strings and null (lists) with a dict."""

    def __init__(self) -> None:
        self.cells: list[Any] = []
        self.kinds: list[int] = []
        self._dicts: dict[int, dict[Any, int]] = {}
        self._tables: dict[int, IntTable] = {}
        self._saved: tuple[int, dict[int, Any], dict[int, int]] = (0, {}, {})

    def __len__(self) -> int:
        return len(self.cells)

    def number(self, kind: int, values: npt.NDArray[Any] | Sequence[Any]) -> Index:
        """The number of each of `values`, all of type `kind`: a numpy array of numbers or
        bools, or a list of strings (or of None for null). Adds the values not seen before."""
        start = len(self.cells)
        fresh: list[Any]
        if isinstance(values, np.ndarray) and values.dtype != object:
            table = self._tables.get(kind)
            if table is None:
                table = self._tables[kind] = IntTable()
            ids, first = table.number(int_keys(values), start)
            fresh = values[first].tolist()
        else:
            table_of = self._dicts.setdefault(kind, {})
            ids, fresh = number_in_dict(table_of, list(values), start)
        if fresh:
            self.cells.extend(fresh)
            self.kinds.extend([kind] * len(fresh))
        return ids

    def checkpoint(self) -> None:
        self._saved = (
            len(self.cells),
            {kind: table.state for kind, table in self._tables.items()},
            {kind: len(table) for kind, table in self._dicts.items()},
        )

    def rollback(self) -> None:
        """Forgets the values numbered since the last checkpoint."""
        size, tables, dicts = self._saved
        self._tables = {kind: table for kind, table in self._tables.items() if kind in tables}
        for kind, state in tables.items():
            self._tables[kind].state = state
        for kind, table in self._dicts.items():
            forget_last(table, len(table) - dicts.get(kind, 0))
        del self.cells[size:], self.kinds[size:]


class GroupNumbers:
    """Numbers for combinations of several keys' value numbers, in order of first appearance.
    The value numbers are packed into one int64 while they fit (looked up in an `IntTable`),
    else a dict maps their tuple to the group. Keeps each group's value numbers (`value_ids`)."""

    def __init__(self, width: int) -> None:
        self.size = 0
        self._bits = PACKED_BITS // width
        self._packed: IntTable | None = IntTable()
        self._tuples: dict[tuple[int, ...], int] = {}
        self._chunks: list[list[Index]] = [[] for _ in range(width)]
        self._saved: tuple[int, Any, list[int]] = (0, None, [0] * width)

    @property
    def packed(self) -> bool:
        """Whether combinations are still looked up packed into int64s."""
        return self._packed is not None

    def number(self, ids: Sequence[Index], value_counts: Sequence[int]) -> Index:
        """The group of each row of `ids` (a value number per key; `value_counts`: how many
        values each key has), adding the combinations not seen before."""
        bits = self._bits
        if self._packed is not None and any(count > 1 << bits for count in value_counts):
            # A key has too many values to pack: tuples from now on.
            self._packed = None
            columns = [column.tolist() for column in self.value_ids()]
            self._tuples = {combo: g for g, combo in enumerate(zip(*columns, strict=True))}
        if self._packed is not None:
            packed = ids[0].astype(np.int64)
            for column in ids[1:]:
                packed = (packed << bits) | column
            target, first = self._packed.number(packed, self.size)
        else:
            combos = list(zip(*[column.tolist() for column in ids], strict=True))
            target, fresh = number_in_dict(self._tuples, combos, self.size)
            new = np.flatnonzero(target >= self.size)
            first = np.zeros(len(fresh), dtype=np.intp)
            first[target[new] - self.size] = new
        for chunks, column in zip(self._chunks, ids, strict=True):
            chunks.append(column[first])
        self.size += len(first)
        return target

    def value_ids(self) -> list[Index]:
        """Per key, the value number of each group, in group order."""
        out = []
        for chunks in self._chunks:
            if len(chunks) != 1:
                chunks[:] = [np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.intp)]
            out.append(chunks[0])
        return out

    def checkpoint(self) -> None:
        self.value_ids()  # one chunk per key: a rollback drops the chunks after it
        state = self._packed.state if self._packed is not None else len(self._tuples)
        self._saved = (self.size, state, [len(chunks) for chunks in self._chunks])

    def rollback(self) -> None:
        """Forgets the groups numbered since the last checkpoint (the packed table stays
        abandoned if they made it one of tuples)."""
        size, state, chunk_counts = self._saved
        if self._packed is not None:
            self._packed.state = state
        else:
            forget_last(self._tuples, self.size - size)
        for chunks, count in zip(self._chunks, chunk_counts, strict=True):
            del chunks[count:]
        self.size = size


class GroupKeys:
    """Group numbers by key, in order of first appearance: each key's values are numbered
    (`values[k]`, a `ValueNumbers`); with one key that number is the group, with several their
    combination is numbered (`GroupNumbers`). Without keys there is at most one group."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.values = [ValueNumbers() for _ in range(width)]
        self._combos = GroupNumbers(width) if width > 1 else None
        self._empty_size = 0
        self._saved_empty = 0

    @property
    def size(self) -> int:
        """How many groups there are."""
        if self._combos is not None:
            return self._combos.size
        return len(self.values[0]) if self.width == 1 else self._empty_size

    @property
    def packed(self) -> bool | None:
        """Whether combinations of several keys are still looked up packed (None: fewer keys)."""
        return None if self._combos is None else self._combos.packed

    def groups(self, ids: Sequence[Index], rows: int) -> Index:
        """The group of each of `rows` rows, given each key's value numbers (`ids`, from
        `values[k].number`), adding new groups."""
        if self.width == 0:
            self._empty_size = max(self._empty_size, min(rows, 1))
            return np.zeros(rows, dtype=np.intp)
        if self._combos is None:
            return ids[0]
        return self._combos.number(ids, [len(values) for values in self.values])

    def key_ids(self, key: int) -> Index:
        """The value number of key `key` in each group, in group order."""
        if self._combos is None:
            return np.arange(self.size, dtype=np.intp)
        return self._combos.value_ids()[key]

    def key_cells(self, key: int) -> list[Any]:
        """The value of key `key` in each group, in group order."""
        cells = self.values[key].cells
        if self._combos is None:
            return cells
        return [cells[i] for i in self.key_ids(key).tolist()]

    def checkpoint(self) -> None:
        for values in self.values:
            values.checkpoint()
        if self._combos is not None:
            self._combos.checkpoint()
        self._saved_empty = self._empty_size

    def rollback(self) -> None:
        """Forgets the groups and key values numbered since the last checkpoint."""
        for values in self.values:
            values.rollback()
        if self._combos is not None:
            self._combos.rollback()
        self._empty_size = self._saved_empty
