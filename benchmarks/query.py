"""The query battery on a local cluster against DuckDB: `python -m benchmarks query`.

A local cluster (`flakehouse up` as processes: broker, five services, 2 storage nodes, 8
partitions) is loaded through the real pipeline with the storage benchmark's generated events
(written out as JSON lines by DuckDB, timestamps in RFC 3339 with microseconds so nothing is
rounded). Then every query of the storage benchmark's battery runs through
the query service (client → query → storage fan-out → merge) and on DuckDB over the same events
in the same run; each answer is checked against DuckDB's, and the median times and their ratio
are printed."""

from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.storage_duckdb import duckdb_table, run_duckdb, same_rows
from benchmarks.storage_events import generate
from benchmarks.storage_queries import QUERIES
from flakehouse.client import Client
from tests.localcluster import RunningCluster

FILES = 100
RUNS = 5


def export_jsonl(con: Any, directory: Path, n: int) -> list[Path]:
    """The DuckDB table as JSON lines files, the way a CI system would send them."""
    per_file = -(-n // FILES)
    paths = []
    for i in range(FILES):
        path = directory / f"part-{i:03d}.jsonl"
        con.execute(
            f"""COPY (SELECT * REPLACE (
                    strftime(make_timestamp("timestamp"), '%Y-%m-%dT%H:%M:%S.%fZ') AS "timestamp")
                FROM bench ORDER BY "timestamp" LIMIT {per_file} OFFSET {i * per_file})
                TO '{path}' (FORMAT JSON)"""
        )
        paths.append(path)
    return paths


def load(client: Client, files: list[Path], n: int, uploaders: int) -> tuple[float, float]:
    """Uploads `files` (n events in all) into dataset `bench`; returns the seconds until ingest
    acknowledged them all and until all n are queryable."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(uploaders) as pool:
        uploaded = sum(
            r.events
            for r in pool.map(lambda p: client.upload(p, dataset="bench", filename=p.name), files)
        )
    acked = time.perf_counter() - t0
    assert uploaded == n, (uploaded, n)
    while client.query("SELECT count(*) FROM bench").rows != [[n]]:
        time.sleep(0.5)
    return acked, time.perf_counter() - t0


def query(n: int, uploaders: int = 4) -> None:
    started = time.perf_counter()
    events = generate(n)
    con = duckdb_table(events)
    with tempfile.TemporaryDirectory() as tmp:
        files = export_jsonl(con, Path(tmp), n)
        prepared = time.perf_counter() - started
        cluster = RunningCluster(Path(tmp) / "cluster", storage_nodes=2, partitions=8)
        try:
            cluster.wait_ready()
            client = Client.from_cluster_file(cluster.cluster_path, timeout_s=600)
            acked, visible = load(client, files, n, uploaders)
            print(f"query battery: {n:,} events in a local cluster (2 storage nodes, 8 partitions)")
            print(
                f"  generate and export {prepared:.1f} s; ingest {acked:.1f} s "
                f"({n / acked:,.0f} events/s), all queryable after {visible:.1f} s"
            )
            print(
                f"  Flakehouse: client → query service → storage, median of {RUNS}; "
                f"DuckDB: same SQL, same events, 2 threads, median of {RUNS}"
            )
            print(f"  {'query':<32}{'Flakehouse ms':>14}{'DuckDB ms':>11}{'ratio':>7}  answer")
            worst = 0.0
            for q in QUERIES:
                times, rows = [], []
                for _ in range(RUNS):
                    t = time.perf_counter()
                    answer = client.query(q.sql, timeout_ms=30_000)
                    times.append(time.perf_counter() - t)
                    assert not answer.partial, answer.missing_partitions
                    rows = [tuple(r) for r in answer.rows]
                _, duck_s, duck_rows = run_duckdb(con, q)
                ours = statistics.median(times)
                same = same_rows(rows, duck_rows, q.ordered, q.rel)
                worst = max(worst, ours)
                print(
                    f"  {q.label:<32}{ours * 1000:>14.1f}{duck_s * 1000:>11.1f}"
                    f"{ours / duck_s:>7.2f}  {'same as DuckDB' if same else 'DIFFERENT'}"
                )
            print(f"  slowest query: {worst * 1000:.0f} ms")
            client.close()
        finally:
            cluster.stop()
