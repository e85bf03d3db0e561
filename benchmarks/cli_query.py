"""A `flakehouse query` process against a DuckDB process over the same events, whole process
against whole process: `python -m benchmarks cli-query [--cli-events N] [--runs N]`.

The query benchmark's events (benchmarks/query.py: generated, exported as JSON lines, ingested
into a local cluster of 2 storage nodes and 8 partitions) also go into a DuckDB database file.
Each query of a small battery then runs as a `flakehouse query --cluster FILE SQL` process (the
console script, table output) and as a Python process that imports duckdb, opens the file read
only and prints the answer, their runs alternating so that a change in the machine's load slows
both alike. Both read their bytecode from a private cache, written by the unmeasured first runs
(startup.cached_bytecode). The first run of each also checks the answers agree. Beside the
processes: the same query from a warm client, and from its answer's stats the query service's
time and the slowest storage node's, to show where a process's time goes."""

from __future__ import annotations

import ast
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.query import export_jsonl, load
from benchmarks.startup import cached_bytecode, flakehouse_command, run_timed, timed
from benchmarks.storage_duckdb import duckdb_table, duckdb_version, same_rows
from benchmarks.storage_events import generate
from benchmarks.storage_queries import Query
from flakehouse.client import Client
from tests.localcluster import RunningCluster

QUERIES = [
    Query("count by status", "SELECT status, count(*) FROM bench GROUP BY status"),
    Query(
        "p95 duration by suite",
        "SELECT suite, p95(duration) FROM bench GROUP BY suite",
        "SELECT suite, quantile_cont(duration, 0.95) FROM bench GROUP BY suite",
        rel=0.01,
    ),
    Query("count(DISTINCT name)", "SELECT count(DISTINCT name) FROM bench", rel=0.02),
    Query("count failed", "SELECT count(*) FROM bench WHERE status = 'failed'"),
]

DUCKDB_SCRIPT = (
    "import sys, duckdb; "
    "print(duckdb.connect(sys.argv[1], read_only=True).sql(sys.argv[2]).fetchall())"
)
WARM_CLIENT_RUNS = 5
Run = tuple[float, float]
"""Seconds of wall-clock and of CPU of one process."""


def _duckdb_file(con: Any, path: Path) -> None:
    """Table `bench` of the in-memory database `con`, copied into a database file at `path`."""
    con.execute(f"ATTACH '{path}' AS disk")
    con.execute("CREATE TABLE disk.bench AS SELECT * FROM bench")
    con.execute("DETACH disk")


def _ms(seconds: list[float]) -> str:
    """Median (min-max) in ms."""
    ms = [s * 1000 for s in seconds]
    return f"{statistics.median(ms):5.0f} ({min(ms):4.0f}-{max(ms):4.0f})"


def _load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cli_query(n: int, runs: int, uploaders: int = 4) -> None:
    started = time.perf_counter()
    events = generate(n)
    con = duckdb_table(events)
    with tempfile.TemporaryDirectory() as tmp:
        files = export_jsonl(con, Path(tmp), n)
        database = Path(tmp) / "bench.duckdb"
        _duckdb_file(con, database)
        con.close()
        prepared = time.perf_counter() - started
        env = cached_bytecode(Path(tmp) / "pycache")
        cluster = RunningCluster(Path(tmp) / "cluster", storage_nodes=2, partitions=8)
        try:
            cluster.wait_ready()
            with Client.from_cluster_file(cluster.cluster_path, timeout_s=600) as client:
                acked, visible = load(client, files, n, uploaders)
            flakehouse = [*flakehouse_command(), "query", "--cluster", str(cluster.cluster_path)]
            print(
                f"cli-query: {n:,} events in a local cluster (2 storage nodes, 8 partitions) "
                f"and in a DuckDB {duckdb_version()} file; whole processes, {runs} runs each "
                "after one unmeasured, alternating"
            )
            print(
                f"  generate and export {prepared:.1f} s; ingest {acked:.1f} s, "
                f"all queryable after {visible:.1f} s"
            )
            print(f"  Flakehouse: {' '.join(flakehouse)} SQL")
            print(f"  DuckDB: {sys.executable} -c 'import duckdb; …connect(FILE, read_only=True)…'")
            print(f"  load average before: {_load_average()}")
            for label, command in [
                ("python -c pass", [sys.executable, "-c", "pass"]),
                ("python -c 'import duckdb'", [sys.executable, "-c", "import duckdb"]),
                ("flakehouse --version", [*flakehouse_command(), "--version"]),
            ]:
                walls = [wall for wall, _ in timed(command, runs, env)]
                print(f"  {label:<26} median (min-max) ms {_ms(walls)}")
            _battery(flakehouse, database, runs, env, cluster.cluster_path)
            print(f"  load average after: {_load_average()}")
        finally:
            cluster.stop()


def _battery(
    flakehouse: list[str], database: Path, runs: int, env: dict[str, str], cluster: Path
) -> None:
    """Times every query as the two processes, and from a warm client; prints the figures."""
    commands = [_commands(q, flakehouse, database) for q in QUERIES]
    same = [_same_answers(q, c, flakehouse, env) for q, c in zip(QUERIES, commands, strict=True)]
    # Round after round of every query, so that a change in load (the cluster settling after
    # ingest, other work on the machine) does not fall on one query alone.
    times: list[tuple[list[Run], list[Run]]] = [([], []) for _ in QUERIES]
    for _ in range(runs):
        for (ours, duck), (ours_times, duck_times) in zip(commands, times, strict=True):
            ours_times.append(run_timed(ours, env)[:2])
            duck_times.append(run_timed(duck, env)[:2])
    print(
        f"  {'query':<24}{'flakehouse ms (min-max)':>24}{'CPU':>5}"
        f"{'DuckDB ms (min-max)':>22}{'CPU':>5}{'ratio':>7}"
        f"{'warm client':>13}{'service':>9}{'storage':>9}  answer"
    )
    ratios = []
    with Client.from_cluster_file(cluster) as client:
        for query, (ours_times, duck_times), agree in zip(QUERIES, times, same, strict=True):
            ratios.append(_line(query, ours_times, duck_times, _warm(client, query), agree))
    print(f"  median ratio {statistics.median(ratios):.2f}")


def _commands(query: Query, flakehouse: list[str], database: Path) -> tuple[list[str], list[str]]:
    """The two processes that answer `query`: Flakehouse's and DuckDB's."""
    duck = [sys.executable, "-c", DUCKDB_SCRIPT, str(database), query.duck or query.sql]
    return [*flakehouse, query.sql], duck


def _same_answers(
    query: Query, commands: tuple[list[str], list[str]], flakehouse: list[str], env: dict[str, str]
) -> bool:
    """Whether both processes answer `query` alike; their unmeasured first runs."""
    ours, duck = commands
    run_timed(ours, env)
    answer = json.loads(run_timed([*flakehouse, "--format", "json", query.sql], env, True)[2])
    duck_rows = ast.literal_eval(run_timed(duck, env, capture=True)[2])
    return same_rows([tuple(r) for r in answer["rows"]], duck_rows, query.ordered, query.rel)


def _warm(client: Client, query: Query) -> tuple[float, float, float]:
    """Median seconds of `query` from a warm client, of the query service's own time, and of
    the slowest storage node's (each node's time as it reports it)."""
    warm, service, storage = [], [], []
    for _ in range(WARM_CLIENT_RUNS):
        t0 = time.perf_counter()
        result = client.query(query.sql)
        warm.append(time.perf_counter() - t0)
        service.append(result.stats["elapsed_ms"] / 1000)
        storage.append(max(node["elapsed_ms"] for node in result.nodes) / 1000)
    return statistics.median(warm), statistics.median(service), statistics.median(storage)


def _line(
    query: Query, ours: list[Run], duck: list[Run], warm: tuple[float, float, float], same: bool
) -> float:
    """Prints the figures of `query`; returns the ratio of the processes' median times."""
    ours_wall = [wall for wall, _ in ours]
    duck_wall = [wall for wall, _ in duck]
    ratio = statistics.median(ours_wall) / statistics.median(duck_wall)
    print(
        f"  {query.label:<24}{_ms(ours_wall):>24}"
        f"{statistics.median(cpu for _, cpu in ours) * 1000:>5.0f}"
        f"{_ms(duck_wall):>22}{statistics.median(cpu for _, cpu in duck) * 1000:>5.0f}"
        f"{ratio:>7.2f}{warm[0] * 1000:>13.0f}{warm[1] * 1000:>9.0f}{warm[2] * 1000:>9.0f}"
        f"  {'same as DuckDB' if same else 'DIFFERENT'}"
    )
    return ratio
