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
Some queries are measured against a plain counterpart too (storage_queries.PAIRS: a conditional
aggregate against the plain one, GROUP BY lower(f) against GROUP BY f), their runs alternating.

`python -m benchmarks.storage --compression [--events N]` measures instead the stored size and
read time of the same store under each RocksDB compression (FORMAT.md, "Compression").

This module runs the steps and prints; the events are made in storage_events.py, the store is
built in storage_store.py, the queries run in storage_queries.py, DuckDB's side and the
comparison are in storage_duckdb.py, and the compression mode is storage_compression.py.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence

from benchmarks.storage_compression import compression
from benchmarks.storage_duckdb import duckdb_table, duckdb_version, run_duckdb, same_rows
from benchmarks.storage_events import generate
from benchmarks.storage_queries import PAIRED_RUNS, PAIRS, QUERIES, WARM_RUNS, run_storage
from benchmarks.storage_store import CACHE_BYTES, PARTITIONS, SEAL_ROWS, build, in_process


def storage(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="flakehouse-bench-") as tmp:
        path = os.path.join(tmp, "segments.rocksdb")
        built = in_process(build, path, n)
        fh = in_process(run_storage, path)
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
            same = same_rows(mine["rows"], rows_d, query.ordered, query.rel)
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
    print(
        "  storage time of a query over its plain counterpart's (median of the ratios of "
        f"{PAIRED_RUNS} runs of each, alternating; target):"
    )
    for label, base, target in PAIRS:
        ratio = fh["pairs"][label]
        verdict = "ok" if ratio <= target else "OVER TARGET"
        print(f"    {label:30} / {base:22} {ratio:5.2f}  (<= {target})  {verdict}")


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
