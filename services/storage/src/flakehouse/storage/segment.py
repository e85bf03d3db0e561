"""The decoded segment that the fragment executor reads: numpy column views, their statistics,
and the dtypes of the format. Pure code: no I/O. See FORMAT.md."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.events import values as v

TIMESTAMP = "timestamp"
"""The pseudo-field naming the timestamps array; a column of that name is shadowed by it."""

ROW_DTYPE = np.dtype("<u4")
CODE_DTYPE = np.dtype("<u4")
TS_DTYPE = np.dtype("<i8")
ID_DTYPE = np.dtype("<u8")
VALUE_DTYPES: dict[int, np.dtype[Any]] = {
    v.INT: np.dtype("<i8"),
    v.FLOAT: np.dtype("<f8"),
    v.BOOL: np.dtype("u1"),
}

# Rough per-string overhead of a Python str in a dictionary, for memory estimates.
STR_OVERHEAD = 56

Rows = npt.NDArray[np.integer[Any]]
"""Row positions: uint32 as stored, or intp."""
Columns = dict[str, dict[int, "ColumnView"]]


@dataclass(frozen=True)
class ColumnStats:
    """A column's statistics: rows holding a value, and the smallest and largest value as Python
    scalars (None when the column holds no value). FLOAT bounds ignore NaN unless every value is
    NaN, like the sealed chunk's `min`/`max`; strings compare by code point, bools False < True."""

    count: int
    min: Any
    max: Any


class ColumnView:
    """One decoded (field, type) column. Sparse: `rows` (ascending) are the row positions holding a
    value. Numbers and bools are in `values` (int64, float64, bool); strings are `codes` into
    `dictionary`, an object array of distinct strings sorted so that codes order like strings.
    A column whose `count` is the segment's row count is dense: its `rows` are 0..n-1."""

    __slots__ = ("_stats", "codes", "dictionary", "rows", "values")

    def __init__(
        self,
        rows: Rows,
        values: npt.NDArray[Any] | None = None,
        codes: npt.NDArray[np.uint32] | None = None,
        dictionary: npt.NDArray[np.object_] | None = None,
    ) -> None:
        self.rows = rows
        self.values = values
        self.codes = codes
        self.dictionary = dictionary
        self._stats: ColumnStats | None = None

    @property
    def count(self) -> int:
        return len(self.rows)

    def stats(self) -> ColumnStats:
        """Count, min and max, as a sealed chunk states them; computed once (a pass over the
        values of a number column, nothing for strings: the dictionary is sorted)."""
        if self._stats is None:
            low: Any = None
            high: Any = None
            if self.dictionary is not None:
                if len(self.dictionary):
                    low, high = self.dictionary[0], self.dictionary[-1]
            elif self.values is not None and len(self.values):
                if self.values.dtype.kind == "f":
                    # fmin/fmax skip NaN, and give NaN only when every value is NaN.
                    low, high = np.fmin.reduce(self.values), np.fmax.reduce(self.values)
                else:
                    low, high = self.values.min(), self.values.max()
                low, high = low.item(), high.item()
            self._stats = ColumnStats(self.count, low, high)
        return self._stats

    @property
    def nbytes(self) -> int:
        """Approximate memory held, for cache accounting."""
        size = self.rows.nbytes
        if self.values is not None:
            size += self.values.nbytes
        if self.codes is not None:
            size += self.codes.nbytes
        if self.dictionary is not None:
            size += self.dictionary.nbytes + sum(
                len(s) + STR_OVERHEAD for s in self.dictionary.tolist()
            )
        return size


ColumnsLoader = Callable[[], tuple[npt.NDArray[np.int64], Columns]]
IdsLoader = Callable[[], npt.NDArray[np.uint64]]


class SegmentView:
    """A queryable segment: decoded numpy arrays, or loaders that decode them on first access so
    that a segment pruned by its time range is never read. `columns` maps field → type → column
    and holds only the fields that were asked for when the view was made."""

    __slots__ = (
        "_column_counts",
        "_column_stats",
        "_columns",
        "_event_ids",
        "_ids_loader",
        "_loader",
        "_timestamps",
        "max_ts",
        "min_ts",
        "row_count",
        "sequence",
    )

    def __init__(
        self,
        *,
        row_count: int,
        min_ts: int,
        max_ts: int,
        sequence: int = -1,
        timestamps: npt.NDArray[np.int64] | None = None,
        event_ids: npt.NDArray[np.uint64] | None = None,
        columns: Columns | None = None,
        loader: ColumnsLoader | None = None,
        ids_loader: IdsLoader | None = None,
        column_counts: Mapping[tuple[str, int], int] | None = None,
        column_stats: Mapping[tuple[str, int], ColumnStats] | None = None,
    ) -> None:
        if (timestamps is None or columns is None) and loader is None:
            raise ValueError("a SegmentView needs timestamps and columns, or a loader")
        if event_ids is None and ids_loader is None:
            raise ValueError("a SegmentView needs event_ids or an ids_loader")
        self.row_count = row_count
        self.min_ts = min_ts
        self.max_ts = max_ts
        self.sequence = sequence
        self._timestamps = timestamps
        self._columns = columns
        self._event_ids = event_ids
        self._loader = loader
        self._ids_loader = ids_loader
        self._column_counts = dict(column_counts) if column_counts is not None else None
        self._column_stats: dict[str, dict[int, ColumnStats]] | None = None
        if column_stats is not None:
            self._column_stats = {}
            for (name, kind), stats in column_stats.items():
                self._column_stats.setdefault(name, {})[kind] = stats

    def _load(self) -> None:
        if self._timestamps is None or self._columns is None:
            assert self._loader is not None
            self._timestamps, self._columns = self._loader()
            self._loader = None

    @property
    def timestamps(self) -> npt.NDArray[np.int64]:
        self._load()
        assert self._timestamps is not None
        return self._timestamps

    @property
    def columns(self) -> Columns:
        self._load()
        assert self._columns is not None
        return self._columns

    @property
    def event_ids(self) -> npt.NDArray[np.uint64]:
        if self._event_ids is None:
            assert self._ids_loader is not None
            self._event_ids = self._ids_loader()
            self._ids_loader = None
        return self._event_ids

    def column_counts(self) -> dict[tuple[str, int], int]:
        """Rows holding each (field, type): from metadata when known, so no column is decoded."""
        if self._column_counts is not None:
            return dict(self._column_counts)
        return {
            (name, kind): col.count
            for name, by_type in self.columns.items()
            for kind, col in by_type.items()
        }

    def column_stats(self, field: str) -> dict[int, ColumnStats] | None:
        """Per type, the stats of `field` when the view knows them without decoding (sealed
        segments: from metadata), else None."""
        if self._column_stats is None:
            return None
        return self._column_stats.get(field, {})

    @property
    def decoded(self) -> bool:
        """Whether the columns are in memory already (reading them costs nothing more)."""
        return self._columns is not None
