"""The open segment of a partition: batches from Kafka appended in offset order, queryable as a
SegmentView, sealed into its protobuf form. Pure code: no I/O. See FORMAT.md."""

from __future__ import annotations

import itertools
import sys
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import events_pb2
from flakehouse.events import values as v
from flakehouse.storage.codec import FORMAT_VERSION, encode_column, object_array
from flakehouse.storage.segment import (
    CODE_DTYPE,
    ID_DTYPE,
    ROW_DTYPE,
    STR_OVERHEAD,
    TIMESTAMP,
    TS_DTYPE,
    VALUE_DTYPES,
    Columns,
    ColumnView,
    SegmentView,
)
from flakehouse.storage.v1 import storage_pb2


class _Growable:
    """An append-only numpy buffer with doubling capacity. `view()` is a slice, so a view taken
    earlier stays valid: later appends write past its end or into a new buffer."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype: np.dtype[Any], capacity: int = 1024) -> None:
        self._buf: npt.NDArray[Any] = np.empty(capacity, dtype=dtype)
        self._n = 0

    def append(self, data: npt.NDArray[Any]) -> None:
        need = self._n + len(data)
        if need > len(self._buf):
            grown = np.empty(max(need, 2 * len(self._buf)), dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = data
        self._n = need

    def __len__(self) -> int:
        return self._n

    def view(self) -> npt.NDArray[Any]:
        return self._buf[: self._n]


class _ColumnBuilder:
    """One (field, type) column of the open segment. Strings get codes in first-seen order; the
    sorted dictionary is derived when a view or the sealed chunk is made."""

    __slots__ = ("_sorted", "kind", "lookup", "rows", "values")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.rows = _Growable(ROW_DTYPE)
        self.values = _Growable(CODE_DTYPE if kind == v.STRING else VALUE_DTYPES[kind])
        self.lookup: dict[str, int] = {}
        # (dictionary size it was built for, sorted dictionary, first-seen code → sorted code)
        self._sorted: tuple[int, npt.NDArray[np.object_], npt.NDArray[np.uint32]] | None = None

    def sorted_dictionary(self) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.uint32]]:
        if self._sorted is None or self._sorted[0] != len(self.lookup):
            raw = object_array(list(self.lookup))
            order = np.argsort(raw, kind="stable")
            rank = np.empty(len(raw), dtype=np.uint32)
            rank[order] = np.arange(len(raw), dtype=np.uint32)
            self._sorted = (len(raw), raw[order], rank)
        return self._sorted[1], self._sorted[2]

    def view(self) -> ColumnView:
        rows = self.rows.view()
        if self.kind == v.STRING:
            dictionary, rank = self.sorted_dictionary()
            return ColumnView(rows, codes=rank[self.values.view()], dictionary=dictionary)
        values = self.values.view()
        if self.kind == v.BOOL:
            values = values.view(np.bool_)
        return ColumnView(rows, values=values)


def _encode_strings(lookup: dict[str, int], strings: list[str]) -> tuple[npt.NDArray[Any], int]:
    """Codes of `strings` in first-seen order, adding new strings to `lookup`; also returns the
    approximate bytes the new strings take."""
    out: list[int] = []
    new_bytes = 0
    for s in strings:
        code = lookup.get(s)
        if code is None:
            s = sys.intern(s)
            code = lookup[s] = len(lookup)
            new_bytes += len(s) + STR_OVERHEAD
        out.append(code)
    return np.array(out, dtype=CODE_DTYPE), new_bytes


def _batch_values(col: events_pb2.Column) -> tuple[int, Any]:
    """The value list of a batch column that matches its declared type, and its length."""
    if col.type == v.STRING:
        return len(col.string_values), col.string_values
    if col.type == v.INT:
        return len(col.int_values), col.int_values
    if col.type == v.FLOAT:
        return len(col.float_values), col.float_values
    if col.type == v.BOOL:
        return len(col.bool_values), col.bool_values
    raise ValueError(f"column {col.name!r}: unknown value type {col.type}")


class SegmentBuilder:
    """The open segment of one partition: batches appended in Kafka order, queryable through
    `view()`, turned into a sealed `Segment` by `seal()`."""

    def __init__(self, dataset: str, partition: int, sequence: int) -> None:
        self.dataset = dataset
        self.partition = partition
        self.sequence = sequence
        self.created_at = time.monotonic()
        self.first_offset: int | None = None
        self.last_offset: int | None = None
        self.approx_bytes = 0
        self._timestamps = _Growable(TS_DTYPE)
        self._event_ids = _Growable(ID_DTYPE)
        self._columns: dict[tuple[str, int], _ColumnBuilder] = {}
        self._min_ts: int | None = None
        self._max_ts: int | None = None
        self._view: SegmentView | None = None
        self._sealed = False

    @property
    def row_count(self) -> int:
        return len(self._timestamps)

    @property
    def time_range(self) -> tuple[int, int] | None:
        """(oldest, newest) timestamp of the rows added so far; None while there are none."""
        if self._min_ts is None or self._max_ts is None:
            return None
        return self._min_ts, self._max_ts

    def add(
        self, batch: events_pb2.EventBatch, offset: int, skip_ids: set[int] | None = None
    ) -> int:
        """Appends the rows of `batch` (the record at Kafka `offset`) whose event id is not in
        `skip_ids`; returns how many were added. A malformed batch raises ValueError and leaves
        the segment unchanged."""
        if self._sealed:
            raise RuntimeError("segment already sealed")
        n = batch.row_count
        if len(batch.timestamps) != n or len(batch.event_ids) != n:
            raise ValueError(
                f"batch row_count {n} but {len(batch.timestamps)} timestamps and "
                f"{len(batch.event_ids)} event ids"
            )
        checked = [(col, *_check_column(col, n)) for col in batch.columns if col.name != TIMESTAMP]
        if len({(col.name, col.type) for col, _, _ in checked}) != len(checked):
            raise ValueError("batch has two columns of the same name and type")

        keep: npt.NDArray[np.bool_] | None = None
        if skip_ids:
            keep = np.fromiter((i not in skip_ids for i in batch.event_ids), dtype=bool, count=n)
            if keep.all():
                keep = None
        timestamps = np.fromiter(batch.timestamps, dtype=TS_DTYPE, count=n)
        event_ids = np.fromiter(batch.event_ids, dtype=ID_DTYPE, count=n)
        new_pos: npt.NDArray[np.intp] | None = None
        if keep is not None:
            new_pos = np.cumsum(keep) - 1
            timestamps = timestamps[keep]
            event_ids = event_ids[keep]
        base = self.row_count
        added = len(timestamps)

        for col, rows, raw in checked:
            kept = keep[rows] if keep is not None else None
            if kept is not None and new_pos is not None:
                rows = new_pos[rows[kept]]
            if len(rows) == 0:
                continue
            builder = self._columns.get((col.name, col.type))
            if builder is None:
                builder = self._columns[(col.name, col.type)] = _ColumnBuilder(col.type)
            builder.rows.append(rows + base)
            if col.type == v.STRING:
                strings = list(raw) if kept is None else list(itertools.compress(raw, kept))
                codes, new_bytes = _encode_strings(builder.lookup, strings)
                builder.values.append(codes)
                self.approx_bytes += 8 * len(rows) + new_bytes
            else:
                data = np.fromiter(raw, dtype=VALUE_DTYPES[col.type], count=len(raw))
                if kept is not None:
                    data = data[kept]
                builder.values.append(data)
                self.approx_bytes += (4 + data.itemsize) * len(rows)

        if added:
            lo, hi = int(timestamps.min()), int(timestamps.max())
            self._min_ts = lo if self._min_ts is None else min(lo, self._min_ts)
            self._max_ts = hi if self._max_ts is None else max(hi, self._max_ts)
        self._timestamps.append(timestamps)
        self._event_ids.append(event_ids)
        self.approx_bytes += 16 * added
        if self.first_offset is None:
            self.first_offset = offset
        self.last_offset = offset
        if added:
            self._view = None
        return added

    def skip(self, offset: int) -> None:
        """Counts the record at Kafka `offset` as applied without adding any of its rows (a
        duplicate of a whole record), so that the segment's offsets still span every record
        applied into it."""
        if self._sealed:
            raise RuntimeError("segment already sealed")
        if self.first_offset is None:
            self.first_offset = offset
        self.last_offset = offset

    def view(self) -> SegmentView:
        """A snapshot of the rows added so far; cached until the next add that adds rows."""
        if self._view is None:
            columns: Columns = {}
            for (name, kind), builder in self._columns.items():
                columns.setdefault(name, {})[kind] = builder.view()
            ts = self._timestamps.view()
            self._view = SegmentView(
                row_count=len(ts),
                min_ts=self._min_ts if self._min_ts is not None else 0,
                max_ts=self._max_ts if self._max_ts is not None else 0,
                sequence=self.sequence,
                timestamps=ts,
                event_ids=self._event_ids.view(),
                columns=columns,
            )
        return self._view

    def seal(self) -> storage_pb2.Segment:
        """The sealed form of everything added. The builder accepts no more rows afterwards."""
        self._sealed = True
        view = self.view()
        segment = storage_pb2.Segment(
            format_version=FORMAT_VERSION,
            dataset=self.dataset,
            partition=self.partition,
            sequence=self.sequence,
            first_offset=self.first_offset if self.first_offset is not None else -1,
            last_offset=self.last_offset if self.last_offset is not None else -1,
            row_count=view.row_count,
            min_timestamp_us=view.min_ts,
            max_timestamp_us=view.max_ts,
            timestamps=view.timestamps.astype(TS_DTYPE, copy=False).tobytes(),
            event_ids=view.event_ids.astype(ID_DTYPE, copy=False).tobytes(),
        )
        for name, kind in sorted(self._columns):
            segment.columns.append(encode_column(name, kind, self._columns[(name, kind)].view()))
        return segment


def _check_column(col: events_pb2.Column, row_count: int) -> tuple[npt.NDArray[np.intp], Any]:
    """Validates one batch column; returns its rows and its value list."""
    count, raw = _batch_values(col)
    if count != len(col.rows):
        raise ValueError(f"column {col.name!r}: {len(col.rows)} rows but {count} values")
    rows = np.fromiter(col.rows, dtype=np.intp, count=len(col.rows))
    if len(rows) and (rows[-1] >= row_count or rows[0] < 0 or np.any(np.diff(rows) <= 0)):
        raise ValueError(f"column {col.name!r}: rows must ascend and be below {row_count}")
    return rows, raw
