"""The columnar segment: the open segment filled from Kafka, its sealed protobuf form, and the
decoded numpy view that the fragment executor reads. Pure code: no I/O. See FORMAT.md."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import events_pb2
from flakehouse.events import values as v
from flakehouse.storage.v1 import storage_pb2

FORMAT_VERSION = 1
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
_STR_OVERHEAD = 56

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


def chunk_stats(chunk: storage_pb2.ColumnChunk) -> ColumnStats:
    """The statistics a sealed chunk carries, also in segment metadata without the data."""
    return ColumnStats(chunk.count, v.from_value(chunk.min), v.from_value(chunk.max))


def segment_column_stats(segment: storage_pb2.Segment) -> dict[tuple[str, int], ColumnStats]:
    """Per (field, type), the stats of a sealed segment's chunks (works on the metadata the store
    keeps, whose chunks have no data), for `SegmentView(column_stats=...)`."""
    return {(c.name, c.type): chunk_stats(c) for c in segment.columns}


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
                len(s) + _STR_OVERHEAD for s in self.dictionary.tolist()
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
            raw = _object_array(list(self.lookup))
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


def _object_array(items: list[str]) -> npt.NDArray[np.object_]:
    # np.array(list_of_str, dtype=object) is right, but build explicitly so an empty list or
    # equal-length sequences can never turn into a 2-D array.
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


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
            new_bytes += len(s) + _STR_OVERHEAD
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


def _stat(kind: int, item: Any) -> events_pb2.Value:
    if kind == v.INT:
        return events_pb2.Value(int_value=int(item))
    if kind == v.FLOAT:
        return events_pb2.Value(float_value=float(item))
    if kind == v.BOOL:
        return events_pb2.Value(bool_value=bool(item))
    return events_pb2.Value(string_value=str(item))


def encode_column(name: str, kind: int, col: ColumnView) -> storage_pb2.ColumnChunk:
    """The sealed chunk of a decoded column, with its count and min/max stats."""
    chunk = storage_pb2.ColumnChunk(
        name=name,
        type=kind,  # type: ignore[arg-type]
        count=col.count,
        rows=col.rows.astype(ROW_DTYPE, copy=False).tobytes(),
    )
    if kind == v.STRING:
        assert col.codes is not None and col.dictionary is not None
        chunk.values = col.codes.astype(CODE_DTYPE, copy=False).tobytes()
        chunk.dictionary.extend(col.dictionary.tolist())
        if len(col.dictionary):
            chunk.min.CopyFrom(_stat(kind, col.dictionary[0]))
            chunk.max.CopyFrom(_stat(kind, col.dictionary[-1]))
        return chunk
    assert col.values is not None
    values = col.values
    chunk.values = values.astype(VALUE_DTYPES[kind], copy=False).tobytes()
    if kind == v.FLOAT:
        # NaN takes no part in the stats (unless every value is NaN), like fmin/fmax.
        values = values[~np.isnan(values)] if np.isnan(values).any() else values
    if len(values):
        chunk.min.CopyFrom(_stat(kind, values.min()))
        chunk.max.CopyFrom(_stat(kind, values.max()))
    elif len(col.values):
        chunk.min.CopyFrom(_stat(kind, float("nan")))
        chunk.max.CopyFrom(_stat(kind, float("nan")))
    return chunk


def decode_column(chunk: storage_pb2.ColumnChunk) -> ColumnView:
    """The numpy view of a sealed chunk; arrays share the chunk's bytes (read-only)."""
    rows = np.frombuffer(chunk.rows, dtype=ROW_DTYPE)
    if len(rows) != chunk.count:
        raise ValueError(f"column {chunk.name!r}: {len(rows)} rows but count {chunk.count}")
    if chunk.type == v.STRING:
        codes = np.frombuffer(chunk.values, dtype=CODE_DTYPE)
        # Interned: segments share most strings, and then share one object per string, which
        # saves memory in the cache and makes dict lookups across segments (group keys) cheap.
        dictionary = _object_array(list(map(sys.intern, chunk.dictionary)))
        if len(codes) != len(rows) or (len(codes) and int(codes.max()) >= len(dictionary)):
            raise ValueError(f"column {chunk.name!r}: bad dictionary codes")
        return ColumnView(rows, codes=codes, dictionary=dictionary)
    if chunk.type not in VALUE_DTYPES:
        raise ValueError(f"column {chunk.name!r}: unknown value type {chunk.type}")
    values: npt.NDArray[Any] = np.frombuffer(chunk.values, dtype=VALUE_DTYPES[chunk.type])
    if chunk.type == v.BOOL:
        values = values.view(np.bool_)
    if len(values) != len(rows):
        raise ValueError(f"column {chunk.name!r}: {len(values)} values for {len(rows)} rows")
    return ColumnView(rows, values=values)


def decode_timestamps(seg: storage_pb2.Segment) -> npt.NDArray[np.int64]:
    ts = np.frombuffer(seg.timestamps, dtype=TS_DTYPE)
    if len(ts) != seg.row_count:
        raise ValueError(f"segment {seg.sequence}: {len(ts)} timestamps for {seg.row_count} rows")
    return ts


def decode_event_ids(seg: storage_pb2.Segment) -> npt.NDArray[np.uint64]:
    ids = np.frombuffer(seg.event_ids, dtype=ID_DTYPE)
    if len(ids) != seg.row_count:
        raise ValueError(f"segment {seg.sequence}: {len(ids)} event ids for {seg.row_count} rows")
    return ids


def check_format(seg: storage_pb2.Segment) -> None:
    if seg.format_version != FORMAT_VERSION:
        raise ValueError(
            f"segment {seg.sequence}: format_version {seg.format_version} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )


def validate_segment(seg: storage_pb2.Segment) -> None:
    """Checks what the executor relies on, before a segment becomes durable (decoding stays
    cheap and trusts it): array lengths, rows ascending and within the segment, dictionaries
    sorted and distinct, codes within them, the time stats."""
    check_format(seg)
    ts = decode_timestamps(seg)
    decode_event_ids(seg)
    if len(ts) and (int(ts.min()) != seg.min_timestamp_us or int(ts.max()) != seg.max_timestamp_us):
        raise ValueError(f"segment {seg.sequence}: min/max timestamps do not match its rows")
    seen: set[tuple[str, int]] = set()
    for chunk in seg.columns:
        if (chunk.name, chunk.type) in seen:
            raise ValueError(f"segment {seg.sequence}: column {chunk.name!r} appears twice")
        seen.add((chunk.name, chunk.type))
        col = decode_column(chunk)
        rows = col.rows
        # int64 first: a difference of uint32 rows would wrap instead of going negative.
        if len(rows) and (
            int(rows[-1]) >= seg.row_count or np.any(np.diff(rows.astype(np.int64)) <= 0)
        ):
            raise ValueError(f"column {chunk.name!r}: rows must ascend below {seg.row_count}")
        words = list(chunk.dictionary)
        if any(a >= b for a, b in itertools.pairwise(words)):
            raise ValueError(f"column {chunk.name!r}: dictionary not sorted and distinct")


def decode_segment(seg: storage_pb2.Segment, fields: set[str] | None = None) -> SegmentView:
    """The numpy view of a sealed segment, decoding only `fields` when given."""
    check_format(seg)
    columns: Columns = {}
    for chunk in seg.columns:
        if fields is None or chunk.name in fields:
            columns.setdefault(chunk.name, {})[chunk.type] = decode_column(chunk)
    return SegmentView(
        row_count=seg.row_count,
        min_ts=seg.min_timestamp_us,
        max_ts=seg.max_timestamp_us,
        sequence=seg.sequence,
        timestamps=decode_timestamps(seg),
        event_ids=decode_event_ids(seg),
        columns=columns,
        column_counts={(c.name, c.type): c.count for c in seg.columns},
        column_stats=segment_column_stats(seg),
    )
