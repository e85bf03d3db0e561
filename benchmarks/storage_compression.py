"""`python -m benchmarks.storage --compression`: the stored size and read time of the storage
benchmark's store under each RocksDB compression (services/storage/FORMAT.md, "Compression")."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.storage_store import CACHE_BYTES, DATASET, PARTITIONS, build, in_process

COMPRESSIONS = {
    "none": ("none", "none"),
    "snappy (RocksDB default)": ("snappy", "snappy"),
    "lz4": ("lz4", "lz4"),
    "zstd": ("zstd", "zstd"),
    "lz4, zstd bottommost": ("lz4", "zstd"),
}


def _read_all(path: str) -> float:
    """Seconds for a freshly opened store to decode every column of every segment."""
    from flakehouse.storage.store import SegmentStore

    store = SegmentStore(path, cache_bytes=CACHE_BYTES)
    try:
        t0 = time.perf_counter()
        for p in range(PARTITIONS):
            for view in store.segments(DATASET, p, None):
                view.columns  # noqa: B018 (decodes)
        return time.perf_counter() - t0
    finally:
        store.close()


def _recompressed(source: str, target: str, upper: str, bottom: str) -> int:
    """Copies the store at `source` into a new RocksDB with the given compressions, compacted
    to its steady state; returns the bytes of its SST files."""
    from rocksdict import (
        BottommostLevelCompaction,
        CompactOptions,
        DBCompressionType,
        Options,
        Rdict,
        WriteBatch,
    )

    options = Options(raw_mode=True)
    options.set_compression_type(getattr(DBCompressionType, upper)())
    options.set_bottommost_compression_type(getattr(DBCompressionType, bottom)())
    src, dst = Rdict(source, options=Options(raw_mode=True)), Rdict(target, options=options)
    try:
        batch, size = WriteBatch(raw_mode=True), 0
        for key, value in src.items():
            batch.put(key, value)
            size += len(value)
            if size > 64 << 20:
                dst.write(batch)
                batch, size = WriteBatch(raw_mode=True), 0
        dst.write(batch)
        dst.flush()
        # Everything down to the bottommost level, where data settles in a long-running store.
        compact = CompactOptions()
        compact.set_bottommost_level_compaction(BottommostLevelCompaction.force())
        dst.compact_range(None, None, compact)
    finally:
        src.close()
        dst.close()
    return sum(f.stat().st_size for f in Path(target).glob("*.sst"))


def _measure_compression(path: str, runs: int) -> list[tuple[str, int, float]]:
    out = []
    for label, (upper, bottom) in COMPRESSIONS.items():
        target = f"{path}-{upper}-{bottom}"
        size = _recompressed(path, target, upper, bottom)
        out.append((label, size, statistics.median(_read_all(target) for _ in range(runs))))
    return out


def compression(n: int, runs: int = 3) -> None:
    """Stored size and cold read time of the benchmark's store per RocksDB compression: the
    built store copied into RocksDBs with each setting and compacted; read: a freshly opened
    store decoding every column (files in the OS page cache)."""
    with tempfile.TemporaryDirectory(prefix="flakehouse-bench-") as tmp:
        path = os.path.join(tmp, "segments.rocksdb")
        built = in_process(build, path, n)
        results = in_process(_measure_compression, path, runs)
    data = built["data_bytes"]
    print(
        f"RocksDB compression: {n:,} events, {int(built['segments'])} segments, segment data "
        f"{data / 1e6:,.1f} MB; read: fresh store decoding every column, median of {runs}"
    )
    for label, size, seconds in results:
        print(f"  {label:26} {size / 1e6:9.1f} MB  {data / size:5.2f}x  read {seconds:6.2f} s")
