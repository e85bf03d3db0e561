"""The storage benchmark's store (benchmarks/storage.py): generated events sealed into segments
of a real SegmentStore on disk, and the fresh processes each step runs in."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from benchmarks.storage_events import STRING_FIELDS, Events, generate

DATASET = "bench"
PARTITIONS = 8
SEAL_ROWS = 100_000
RECORD_ROWS = 1_000
"""Events per Kafka record (one upload's batch): partitions get whole records."""
CACHE_BYTES = 4 << 30
"""The store's decoded-column cache for the benchmark: large enough to hold every column the
queries read, so that warm runs measure execution (the service default is 1 GiB,
FLAKEHOUSE_STORAGE_CACHE_BYTES)."""


def _segment(
    events: Events, idx: npt.NDArray[np.intp], partition: int, seq: int, offsets: Any
) -> Any:
    """The sealed Segment of rows `idx`, as SegmentBuilder.seal() would encode them."""
    from flakehouse.events import values as v
    from flakehouse.storage.codec import FORMAT_VERSION, encode_column
    from flakehouse.storage.segment import ColumnView
    from flakehouse.storage.v1 import storage_pb2

    ts = events.timestamps[idx]
    segment = storage_pb2.Segment(
        format_version=FORMAT_VERSION,
        dataset=DATASET,
        partition=partition,
        sequence=seq,
        first_offset=offsets[0],
        last_offset=offsets[1],
        row_count=len(idx),
        min_timestamp_us=int(ts.min()),
        max_timestamp_us=int(ts.max()),
        timestamps=ts.tobytes(),
        event_ids=events.event_ids[idx].tobytes(),
    )
    columns: dict[tuple[str, int], ColumnView] = {}
    for field in STRING_FIELDS:
        global_codes = events.codes[field][idx]
        rows = np.flatnonzero(global_codes >= 0)
        if len(rows) == 0:
            continue
        # Global dictionaries are sorted, so sorted global codes give the sorted local one.
        used, local = np.unique(global_codes[rows], return_inverse=True)
        dictionary = np.empty(len(used), dtype=object)
        dictionary[:] = [events.dictionaries[field][c] for c in used.tolist()]
        columns[(field, v.STRING)] = ColumnView(
            rows.astype(np.uint32), codes=local.astype(np.uint32), dictionary=dictionary
        )
    duration = events.duration[idx]
    rows = np.flatnonzero(~np.isnan(duration))
    columns[("duration", v.FLOAT)] = ColumnView(rows.astype(np.uint32), values=duration[rows])
    rows = np.flatnonzero(events.has_retries[idx])
    if len(rows):
        columns[("retries", v.INT)] = ColumnView(
            rows.astype(np.uint32), values=events.retries[idx][rows]
        )
    for name, kind in sorted(columns):
        segment.columns.append(encode_column(name, kind, columns[(name, kind)]))
    return segment


def build(path: str, n: int) -> dict[str, float]:
    """Generates `n` events and seals them into a new store at `path` (runs in its own process)."""
    from flakehouse.storage.store import SegmentStore

    t0 = time.perf_counter()
    events = generate(n)
    generated = time.perf_counter() - t0
    store = SegmentStore(path)
    segments = 0
    try:
        records = np.arange(0, n, RECORD_ROWS)
        for partition in range(PARTITIONS):
            mine = records[partition::PARTITIONS]
            per_segment = SEAL_ROWS // RECORD_ROWS
            for seq, at in enumerate(range(0, len(mine), per_segment)):
                starts = mine[at : at + per_segment]
                idx = np.concatenate([np.arange(s, min(s + RECORD_ROWS, n)) for s in starts])
                store.seal(
                    _segment(events, idx, partition, seq, (at, at + len(starts) - 1)),
                    at + len(starts),
                )
                segments += 1
        usage = [store.usage(DATASET, p) for p in range(PARTITIONS)]
    finally:
        store.close()
    return {
        "generate_s": generated,
        "build_s": time.perf_counter() - t0 - generated,
        "segments": segments,
        "data_bytes": sum(u[1] for u in usage),
        "disk_bytes": sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()),
        "peak_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


T = TypeVar("T")


def in_process(fn: Callable[..., T], *args: Any) -> T:
    """Runs `fn(*args)` in a fresh process, so its memory and timings are its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()
