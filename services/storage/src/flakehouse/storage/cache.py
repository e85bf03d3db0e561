"""Decoded columns of sealed segments: a bounded LRU cache of numpy arrays, and the lazy
SegmentView that decodes a segment from a RocksDB snapshot through it on first access."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt
from rocksdict import Snapshot

from flakehouse.storage import layout
from flakehouse.storage.codec import decode_column
from flakehouse.storage.segment import Columns, ColumnView, SegmentView
from flakehouse.storage.v1 import storage_pb2


class ColumnCache:
    """LRU of decoded arrays keyed by (dataset, partition, epoch, sequence, part...), bounded in
    bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: tuple[Any, ...], value: Any, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size

    def discard(self, dataset: str, partition: int, sequences: set[int] | None = None) -> None:
        with self._lock:
            for key in [
                k
                for k in self._items
                if k[0] == dataset
                and k[1] == partition
                and (sequences is None or k[3] in sequences)
            ]:
                self._bytes -= self._items.pop(key)[1]

    @property
    def nbytes(self) -> int:
        return self._bytes


def lazy_view(
    snap: Snapshot,
    cache: ColumnCache,
    cache_key: tuple[str, int, int],
    prefix: bytes,
    info: layout.SegmentInfo,
    fields: set[str] | None,
) -> SegmentView:
    """A view of the sealed segment `info` (of the partition at `prefix`) that reads its
    timestamps and `fields` (all when None), and its event ids, from the snapshot on first
    access; `cache_key` is (dataset, partition, epoch)."""
    meta = info.meta
    seq = meta.sequence
    wanted = [key for key in info.column_counts if fields is None or key[0] in fields]
    data = layout.data_prefix(prefix, seq)

    def load_array(part: bytes, dtype: str) -> npt.NDArray[Any]:
        key = (*cache_key, seq, part)
        cached = cache.get(key)
        if cached is None:
            cached = np.frombuffer(snap[data + part], dtype=dtype)
            if len(cached) != meta.row_count:
                raise ValueError(f"segment {seq}: {len(cached)} values, {meta.row_count} rows")
            cache.put(key, cached, cached.nbytes)
        return cached  # type: ignore[no-any-return]

    def load() -> tuple[npt.NDArray[np.int64], Columns]:
        columns: Columns = {}
        for name, kind in wanted:
            key = (*cache_key, seq, layout.COLUMN, name, kind)
            col: ColumnView | None = cache.get(key)
            if col is None:
                chunk = storage_pb2.ColumnChunk()
                chunk.ParseFromString(snap[layout.column_key(prefix, seq, name, kind)])
                col = decode_column(chunk)
                cache.put(key, col, col.nbytes)
            columns.setdefault(name, {})[kind] = col
        return load_array(layout.TIMESTAMPS, "<i8"), columns

    def load_ids() -> npt.NDArray[np.uint64]:
        return load_array(layout.EVENT_IDS, "<u8")

    return SegmentView(
        row_count=meta.row_count,
        min_ts=meta.min_timestamp_us,
        max_ts=meta.max_timestamp_us,
        sequence=seq,
        loader=load,
        ids_loader=load_ids,
        column_counts=info.column_counts,
        column_stats=info.column_stats,
    )
