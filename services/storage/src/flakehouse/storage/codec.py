"""The sealed segment's protobuf form (FORMAT.md): encoding decoded columns into chunks, decoding
chunks and whole segments into views, and the checks a segment passes before it becomes
durable. Pure code: no I/O."""

from __future__ import annotations

import itertools
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import events_pb2
from flakehouse.events import values as v
from flakehouse.storage.segment import (
    CODE_DTYPE,
    ID_DTYPE,
    ROW_DTYPE,
    TS_DTYPE,
    VALUE_DTYPES,
    Columns,
    ColumnStats,
    ColumnView,
    SegmentView,
)
from flakehouse.storage.v1 import storage_pb2

FORMAT_VERSION = 1


def chunk_stats(chunk: storage_pb2.ColumnChunk) -> ColumnStats:
    """The statistics a sealed chunk carries, also in segment metadata without the data."""
    return ColumnStats(chunk.count, v.from_value(chunk.min), v.from_value(chunk.max))


def segment_column_stats(segment: storage_pb2.Segment) -> dict[tuple[str, int], ColumnStats]:
    """Per (field, type), the stats of a sealed segment's chunks (works on the metadata the store
    keeps, whose chunks have no data), for `SegmentView(column_stats=...)`."""
    return {(c.name, c.type): chunk_stats(c) for c in segment.columns}


def object_array(items: list[str]) -> npt.NDArray[np.object_]:
    # np.array(list_of_str, dtype=object) is right, but build explicitly so an empty list or
    # equal-length sequences can never turn into a 2-D array.
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


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
        dictionary = object_array(list(map(sys.intern, chunk.dictionary)))
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
