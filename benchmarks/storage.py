"""Storage benchmark: generated test events (10 million by default) sealed into segments of a real
SegmentStore on disk, queried through the fragment executor and the query service's planner and
merge, and the same queries on DuckDB over the same events, in the same run.

Three processes, one after the other, so that each one's timings and peak memory are its own:
1. build: generate the events (numpy) and seal them, 100,000 rows per segment, into a store of 8
   partitions. Segments are built from the generated columns directly (no JUnit, no Kafka), with
   the executor's own `encode_column`, and sealed through `SegmentStore.seal` as a replica does.
2. storage: open the store like a restarted node; per query a cold run (fresh store: empty column
   cache, so chunks are read and decoded from RocksDB) and warm runs (median); its peak RSS.
3. this process: the same events into a DuckDB table (default threads), the same queries, and a
   check that both engines give the same answers.

`python -m benchmarks.storage --compression [--events N]` measures instead the stored size and
read time of the same store under each RocksDB compression (FORMAT.md, "Compression").
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

DATASET = "bench"
PARTITIONS = 8
SEAL_ROWS = 100_000
RECORD_ROWS = 1_000
"""Events per Kafka record (one upload's batch): partitions get whole records."""
WARM_RUNS = 5
CACHE_BYTES = 4 << 30
"""The store's decoded-column cache for the benchmark: large enough to hold every column the
queries read, so that warm runs measure execution (the service default is 1 GiB,
FLAKEHOUSE_STORAGE_CACHE_BYTES)."""
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DAYS = 30
SEED = 20260101

STRING_FIELDS = ("branch", "classname", "hostname", "message", "name", "prop.os", "status", "suite")


# -- generated events ----------------------------------------------------------------------------


@dataclass
class Events:
    """Generated events as columns. Strings are int32 codes into a sorted dictionary (code -1:
    absent); `duration` is absent where NaN; `retries` where `has_retries` is false."""

    timestamps: npt.NDArray[np.int64]
    event_ids: npt.NDArray[np.uint64]
    codes: dict[str, npt.NDArray[np.int32]]
    dictionaries: dict[str, list[str]]
    duration: npt.NDArray[np.float64]
    retries: npt.NDArray[np.int64]
    has_retries: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.timestamps)


_VERBS = ["create", "delete", "update", "list", "login", "logout", "render", "parse", "retry"]
_NOUNS = ["user", "order", "invoice", "session", "cache", "timeout", "report", "token", "upload"]
_AREAS = ["payments", "search", "auth", "billing", "catalog", "checkout", "ui", "api", "infra"]


def _encode(strings: Sequence[str], picks: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], list[str]]:
    """Codes into the sorted dictionary of `strings` for `picks` (indexes into `strings`)."""
    dictionary = sorted(set(strings))
    position = {s: i for i, s in enumerate(dictionary)}
    remap = np.array([position[s] for s in strings], dtype=np.int32)
    return remap[picks], dictionary


def generate(n: int, seed: int = SEED) -> Events:
    """Test events with a CI's shape: hundreds of suites, thousands of classes, tens of thousands
    of tests run with Zipf-like frequency, a few percent failures, errors and skips (more for
    flaky tests), lognormal durations, timestamps over 30 days in arrival order, and sparse
    fields: `prop.os` on ~30 % of rows, `retries` on ~3 %, `message` on failures and errors."""
    rng = np.random.default_rng(seed)
    n_suites, n_classes, n_tests = 300, 6_000, 40_000
    suites = [f"{_AREAS[i % len(_AREAS)]}-suite-{i:03d}" for i in range(n_suites)]
    class_suite = rng.integers(0, n_suites, n_classes)
    classes = [
        f"com.acme.{_AREAS[int(class_suite[i]) % len(_AREAS)]}.Module{i % 97}.Case{i}Test"
        for i in range(n_classes)
    ]
    test_class = rng.integers(0, n_classes, n_tests)
    tests = [
        f"test_{_VERBS[i % len(_VERBS)]}_{_NOUNS[(i // len(_VERBS)) % len(_NOUNS)]}_{i}"
        for i in range(n_tests)
    ]
    weights = 1.0 / np.arange(1, n_tests + 1) ** 0.6
    test = rng.choice(n_tests, size=n, p=weights / weights.sum())
    cls = test_class[test]

    flaky_test = rng.random(n_tests) < 0.05
    p_fail = np.where(flaky_test, 0.15, 0.015)[test]
    u = rng.random(n)
    status = np.zeros(n, dtype=np.int64)  # passed
    status[u < p_fail + 0.005] = 2  # error
    status[u < p_fail] = 1  # failed
    status[u > 0.985] = 3  # skipped
    status_codes, status_dict = _encode(["passed", "failed", "error", "skipped"], status)

    base = rng.lognormal(-2.5, 1.6, n_tests)
    duration = np.round(base[test] * rng.lognormal(0.0, 0.35, n), 3)
    duration[status == 3] = 0.0
    duration[rng.random(n) < 0.002] = np.nan  # time="" in the report: absent

    hosts = [f"ci-runner-{i:02d}" for i in range(64)]
    branches = ["main", *(f"feature/{_NOUNS[i % len(_NOUNS)]}-{i}" for i in range(200))]
    branch = np.where(rng.random(n) < 0.6, 0, rng.integers(1, len(branches), n))
    os_names = ["linux", "macos", "windows"]
    os_pick = rng.choice(3, size=n, p=[0.6, 0.15, 0.25])
    os_codes, os_dict = _encode(os_names, os_pick)
    os_codes[rng.random(n) >= 0.3] = -1

    messages = [
        f"AssertionError: expected {i % 50} but got {i // 50}" if i % 3 else f"Timeout after {i}s"
        for i in range(2_000)
    ]
    msg_codes, msg_dict = _encode(messages, rng.integers(0, len(messages), n))
    msg_codes[(status != 1) & (status != 2)] = -1

    has_retries = rng.random(n) < 0.03
    retries = np.where(has_retries, rng.integers(1, 4, n), 0)

    codes: dict[str, npt.NDArray[np.int32]] = {}
    dictionaries: dict[str, list[str]] = {}
    for field, (c, d) in {
        "suite": _encode(suites, class_suite[cls]),
        "classname": _encode(classes, cls),
        "name": _encode(tests, test),
        "status": (status_codes, status_dict),
        "hostname": _encode(hosts, rng.integers(0, len(hosts), n)),
        "branch": _encode(branches, branch),
        "prop.os": (os_codes, os_dict),
        "message": (msg_codes, msg_dict),
    }.items():
        codes[field], dictionaries[field] = c, d
    span = DAYS * 86_400 * 1_000_000
    return Events(
        timestamps=np.sort(rng.integers(START_US, START_US + span, n)),
        event_ids=rng.integers(0, 2**63, n, dtype=np.uint64),
        codes=codes,
        dictionaries=dictionaries,
        duration=duration,
        retries=retries.astype(np.int64),
        has_retries=has_retries,
    )


# -- the store -----------------------------------------------------------------------------------


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


# -- queries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    label: str
    sql: str
    """Flakehouse SQL, planned by the query service's planner."""
    duck: str = ""
    """DuckDB SQL when it differs."""
    ir: Callable[[], Any] | None = None
    """Builds the QueryPlan directly, for what the planner does not take yet."""
    ordered: int = 0
    """Compare only the first `ordered` columns, in order (ORDER BY with ties)."""
    rel: float = 0.0
    """Relative tolerance of numbers, for the sketch-based aggregates (else float rounding)."""


_HOUR, _DAY = 3_600_000_000, 86_400_000_000
_LAST_2D = START_US + (DAYS - 2) * _DAY

QUERIES = [
    Query("count by status", "SELECT status, count(*) FROM bench GROUP BY status"),
    Query(
        "failed by suite",
        "SELECT suite, count(*) FROM bench WHERE status = 'failed' GROUP BY suite",
    ),
    Query(
        "count/avg/max by suite",
        "SELECT suite, count(*), avg(duration), max(duration) FROM bench GROUP BY suite",
    ),
    Query(
        "count by suite, status",
        "SELECT suite, status, count(*) FROM bench GROUP BY suite, status",
    ),
    Query(
        "time_bucket 1h",
        "SELECT time_bucket(timestamp, '1h'), count(*) FROM bench GROUP BY 1",
        f'SELECT "timestamp" // {_HOUR} * {_HOUR}, count(*) FROM bench GROUP BY 1',
    ),
    Query(
        "time_bucket 1d",
        "SELECT time_bucket(timestamp, '1d'), count(*) FROM bench GROUP BY 1",
        f'SELECT "timestamp" // {_DAY} * {_DAY}, count(*) FROM bench GROUP BY 1',
    ),
    Query(
        "last 2 days by status",
        "SELECT status, count(*) FROM bench WHERE timestamp >= '2026-01-29' GROUP BY status",
        f'SELECT status, count(*) FROM bench WHERE "timestamp" >= {_LAST_2D} GROUP BY status',
    ),
    Query(
        "prop.os = windows by suite",
        """SELECT suite, count(*) FROM bench WHERE "prop.os" = 'windows' GROUP BY suite""",
    ),
    Query(
        "duration > 10 by suite",
        "SELECT suite, count(*) FROM bench WHERE duration > 10 GROUP BY suite",
    ),
    Query(
        "duration > 100 (rare)",
        "SELECT suite, name, duration FROM bench WHERE duration > 100",
    ),
    Query(
        "name LIKE by status",
        "SELECT status, count(*) FROM bench WHERE name LIKE '%timeout%' GROUP BY status",
    ),
    Query(
        "failed by name (40k keys)",
        "SELECT name, count(*) FROM bench WHERE status = 'failed' GROUP BY name",
    ),
    Query(
        "top 100 by duration",
        "SELECT duration, suite, name FROM bench ORDER BY duration DESC LIMIT 100",
        "SELECT duration, suite, name FROM bench ORDER BY duration DESC NULLS LAST LIMIT 100",
        ordered=1,
    ),
    Query("count(DISTINCT name)", "SELECT count(DISTINCT name) FROM bench", rel=0.02),
    Query(
        "count(DISTINCT name) by suite",
        "SELECT suite, count(DISTINCT name) FROM bench GROUP BY suite",
        rel=0.02,
    ),
    Query(
        "p50/p95/p99 duration by suite",
        "SELECT suite, p50(duration), p95(duration), p99(duration) FROM bench GROUP BY suite",
        "SELECT suite, quantile_cont(duration, 0.5), quantile_cont(duration, 0.95),"
        " quantile_cont(duration, 0.99) FROM bench GROUP BY suite",
        rel=0.01,
    ),
]


def _flakehouse(store: Any, query: Query) -> tuple[float, float, list[tuple[Any, ...]] | None, Any]:
    """One run as the service does it: plan, views of every partition, execute, merge, finalize.
    Returns (seconds in the storage node: views and fragment.execute; seconds in all, planning
    and the query service's merge and finalize included; the answer's rows, or None when the
    query service cannot finalize it yet; the scan stats)."""
    from flakehouse.events.values import from_value
    from flakehouse.query.answer import finalize
    from flakehouse.query.merge import merge_partials
    from flakehouse.query.sql import plan_query
    from flakehouse.storage import fragment

    t0 = time.perf_counter()
    planned = None if query.ir is not None else plan_query(query.sql, now_us=0)
    plan = query.ir() if query.ir is not None else planned.plan  # type: ignore[union-attr]
    t1 = time.perf_counter()
    fields = fragment.fields_needed(plan)
    views = [v for p in range(PARTITIONS) for v in store.segments(DATASET, p, fields)]
    partial = fragment.execute(plan, views)
    t2 = time.perf_counter()
    answer = None
    if planned is not None:
        _, answer = finalize(planned, merge_partials(planned, [partial]))
    t3 = time.perf_counter()
    rows = None if answer is None else [tuple(from_value(x) for x in r.values) for r in answer]
    return t2 - t1, t3 - t0, rows, partial.stats


def run_storage(path: str) -> dict[str, Any]:
    """Every query on the store at `path`: a cold run on a freshly opened store, then warm runs
    (runs in its own process, whose peak RSS is the storage side's)."""
    from flakehouse.storage.fragment import UnsupportedPlan
    from flakehouse.storage.store import SegmentStore

    out: dict[str, Any] = {}
    for query in QUERIES:
        store = SegmentStore(path, cache_bytes=CACHE_BYTES)
        try:
            cold, _, rows, stats = _flakehouse(store, query)
            runs = [_flakehouse(store, query) for _ in range(WARM_RUNS)]
        except UnsupportedPlan as exc:
            out[query.label] = {"error": str(exc)}
            continue
        finally:
            store.close()
        out[query.label] = {
            "cold": cold,
            "warm": statistics.median(r[0] for r in runs),
            "total": statistics.median(r[1] for r in runs),
            "rows": rows,
            "scanned": stats.segments_scanned,
            "skipped": stats.segments_skipped,
        }
    out["peak_mb"] = peak_rss_mb()
    return out


# -- DuckDB --------------------------------------------------------------------------------------


def duckdb_table(events: Events) -> Any:
    """The events as table `bench`: one column per field, NULL where absent."""
    import duckdb

    con = duckdb.connect()
    source: dict[str, npt.NDArray[Any]] = {
        "ts": events.timestamps,
        "duration": events.duration,
        "retries": events.retries,
        "has_retries": events.has_retries,
    }
    selects = [
        'ts AS "timestamp"',
        "CASE WHEN isnan(duration) THEN NULL ELSE duration END AS duration",
    ]
    selects.append("CASE WHEN has_retries THEN retries END AS retries")
    joins = []
    for i, field in enumerate(STRING_FIELDS):
        source[f"c{i}"] = events.codes[field]
        dictionary = np.empty(len(events.dictionaries[field]), dtype=object)
        dictionary[:] = events.dictionaries[field]
        con.register(f"d{i}", {"code": np.arange(len(dictionary), dtype=np.int32), "s": dictionary})
        selects.append(f'd{i}.s AS "{field}"')
        joins.append(f"LEFT JOIN d{i} ON src.c{i} = d{i}.code")
    con.register("src", source)
    # In arrival order, like the segments: DuckDB's zone maps see the time order too.
    con.execute(
        f"CREATE TABLE bench AS SELECT {', '.join(selects)} FROM src {' '.join(joins)} ORDER BY ts"
    )
    con.unregister("src")
    return con


def run_duckdb(con: Any, query: Query) -> tuple[float, float, list[tuple[Any, ...]]]:
    sql = query.duck or query.sql
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    cold = time.perf_counter() - t0
    times = []
    for _ in range(WARM_RUNS):
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t0)
    return cold, statistics.median(times), [tuple(r) for r in rows]


def _same_rows(
    a: list[tuple[Any, ...]], b: list[tuple[Any, ...]], ordered: int, rel: float = 0.0
) -> bool:
    if ordered:
        return [r[:ordered] for r in a] == [r[:ordered] for r in b]
    if len(a) != len(b):
        return False

    def key(row: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
        # Rows equal but for a float (raw rows) must pair up too: floats take part, by value.
        return tuple(
            (0, x if x == x else math.inf) if isinstance(x, float) else (1, repr(x)) for x in row
        )

    for x, y in zip(sorted(a, key=key), sorted(b, key=key), strict=True):
        for p, q in zip(x, y, strict=True):
            if rel and isinstance(p, int | float) and isinstance(q, int | float):
                # Within the sketches' bound (plus float rounding at the bound).
                if abs(p - q) > rel * (1 + 1e-9) * abs(q):
                    return False
            elif isinstance(p, float) or isinstance(q, float):
                if not math.isclose(p, q, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif p != q:
                return False
    return True


# -- the run -------------------------------------------------------------------------------------

T = TypeVar("T")


def _in_process(fn: Callable[..., T], *args: Any) -> T:
    """Runs `fn(*args)` in a fresh process, so its memory and timings are its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f}"


def storage(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="flakehouse-bench-") as tmp:
        path = os.path.join(tmp, "segments.rocksdb")
        built = _in_process(build, path, n)
        fh = _in_process(run_storage, path)
    t0 = time.perf_counter()
    events = generate(n)
    con = duckdb_table(events)
    loaded = time.perf_counter() - t0
    del events
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]

    print(
        f"storage: {n:,} events, {int(built['segments'])} sealed segments of <= {SEAL_ROWS:,} "
        f"rows in {PARTITIONS} partitions of one SegmentStore"
    )
    print(
        f"  generate {built['generate_s']:.1f} s, seal into RocksDB {built['build_s']:.1f} s "
        f"({n / built['build_s']:,.0f} events/s); segment data {built['data_bytes'] / 1e6:,.0f} MB,"
        f" on disk {built['disk_bytes'] / 1e6:,.0f} MB; build peak RSS {built['peak_mb']:,.0f} MB"
    )
    print(
        "  storage: the store's views and fragment.execute (one thread), warm column cache "
        f"({CACHE_BYTES >> 20} MB), median of {WARM_RUNS} runs; cold: first run on a freshly "
        "opened store\n  +merge: planning, storage, and the query service's merge and finalize; "
        f"DuckDB {duckdb_version()}: {threads} threads (its default on {os.cpu_count()} cores), "
        f"median of {WARM_RUNS} runs, table loaded in {loaded:.1f} s"
    )
    print(
        f"  {'query':28} {'storage':>8} {'cold':>8} {'+merge':>8} {'DuckDB':>8} "
        f"{'ratio':>6} {'ratio':>6} {'segments':>9}  answer"
    )
    print(
        f"  {'':28} {'ms':>8} {'ms':>8} {'ms':>8} {'ms':>8} "
        f"{'stor.':>6} {'+merge':>6} {'skipped':>9}"
    )
    for query in QUERIES:
        _, warm_d, rows_d = run_duckdb(con, query)
        mine = fh[query.label]
        if "error" in mine:
            na = "n/a"
            print(
                f"  {query.label:28} {na:>8} {na:>8} {na:>8} {warm_d * 1000:8.1f} {na:>6} "
                f"{na:>6} {'':>9}  {mine['error'][:70]}"
            )
            continue
        if mine["rows"] is None:
            check = "not checked (no merge yet)"
            total = merged_ratio = "n/a"
        else:
            same = _same_rows(mine["rows"], rows_d, query.ordered, query.rel)
            check = "same as DuckDB" if same else "DIFFERENT"
            if same and query.rel:
                check = f"within {query.rel:.0%} of DuckDB"
            total = f"{mine['total'] * 1000:.1f}"
            merged_ratio = f"{mine['total'] / warm_d:.2f}"
        skipped = f"{mine['skipped']}/{mine['scanned'] + mine['skipped']}"
        print(
            f"  {query.label:28} {mine['warm'] * 1000:8.1f} {mine['cold'] * 1000:8.1f} "
            f"{total:>8} {warm_d * 1000:8.1f} {mine['warm'] / warm_d:6.2f} {merged_ratio:>6} "
            f"{skipped:>9}  {check}"
        )
    print(f"  peak RSS of the storage process (queries, cache included): {fh['peak_mb']:,.0f} MB")


def duckdb_version() -> str:
    import duckdb

    return str(duckdb.__version__)


# -- RocksDB compression ---------------------------------------------------------------------------

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
        built = _in_process(build, path, n)
        results = _in_process(_measure_compression, path, runs)
    data = built["data_bytes"]
    print(
        f"RocksDB compression: {n:,} events, {int(built['segments'])} segments, segment data "
        f"{data / 1e6:,.1f} MB; read: fresh store decoding every column, median of {runs}"
    )
    for label, size, seconds in results:
        print(f"  {label:26} {size / 1e6:9.1f} MB  {data / size:5.2f}x  read {seconds:6.2f} s")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument(
        "--compression", action="store_true", help="measure RocksDB compressions instead"
    )
    args = parser.parse_args(argv)
    if args.compression:
        compression(args.events)
    else:
        storage(args.events)


if __name__ == "__main__":
    main()
