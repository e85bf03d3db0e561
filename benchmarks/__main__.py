"""Runs the benchmarks and prints their figures: `python -m benchmarks [NAME...]`, where NAME is
ingest, large, large-json, end-to-end, freshness, storage, query, limits, parsing, fanout, groups,
startup, cli-query, json-upload, small-files, links or storage-apply (all by default).

ingest, large and large-json: see benchmarks/ingest.py. end-to-end: a local cluster
(`flakehouse up` as processes: broker, five services, 2 storage nodes, 8 partitions) takes
generated JUnit reports through the client; it reports testcases per second until Kafka
acknowledged every event, the time until every event is queryable, and the median latency of a
few queries; once with the durable broker (the default) and once with `--ephemeral`. freshness:
see benchmarks/freshness.py. storage: see benchmarks/storage.py. limits: see
benchmarks/limits.py. parsing and fanout (the times and peaks the unit tests no longer assert):
see benchmarks/parsing.py and benchmarks/fanout.py. groups (the memory of a query with a million
groups, behind max_groups): see benchmarks/groups_memory.py. startup (how long the `flakehouse`
command takes to start and to answer a small query): see benchmarks/startup.py. cli-query (a
`flakehouse query` process against a DuckDB process over the same million events): see
benchmarks/cli_query.py. json-upload and
small-files (a large JSON-lines file, and a thousand small reports, through the CLI until
queryable): see benchmarks/uploads.py. links (pull throughput between two local clusters): see
benchmarks/links.py. storage-apply (records through a replica's apply, then every record again):
see benchmarks/storage_apply.py."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import ingest, limits, links, query, storage, uploads
from benchmarks.cli_query import cli_query
from benchmarks.fanout import fanout
from benchmarks.freshness import ack_to_visible
from benchmarks.groups_memory import groups_memory
from benchmarks.junitgen import report
from benchmarks.parsing import parsing
from benchmarks.startup import startup
from benchmarks.storage_apply import storage_apply
from flakehouse.client import Client
from tests import credentials
from tests.localcluster import RunningCluster

QUERIES = [
    "SELECT status, count(*) FROM bench GROUP BY status",
    "SELECT suite, count(*) AS runs, avg(duration), max(duration) FROM bench "
    "WHERE status = 'failed' GROUP BY suite ORDER BY runs DESC LIMIT 20",
    "SELECT time_bucket(timestamp, '1d'), count(*) FROM bench GROUP BY 1",
    "SELECT name, duration FROM bench WHERE duration > 1 ORDER BY duration DESC LIMIT 10",
]


def end_to_end(files: int, cases_per_file: int, uploaders: int, ephemeral: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RunningCluster(
            Path(tmp) / "cluster", storage_nodes=2, partitions=8, ephemeral=ephemeral
        )
        try:
            launched = time.perf_counter()
            cluster.wait_ready()
            ready = time.perf_counter() - launched
            client = Client.from_cluster_file(cluster.cluster_path)
            reports = [report(seed, cases_per_file) for seed in range(files)]
            total = files * cases_per_file
            started = time.perf_counter()
            with ThreadPoolExecutor(uploaders) as pool:
                results = list(
                    pool.map(
                        lambda item: client.upload(
                            item[1], dataset="bench", filename=f"r{item[0]}.xml"
                        ),
                        enumerate(reports),
                    )
                )
            acked = time.perf_counter() - started
            assert sum(r.events for r in results) == total
            while True:
                answer = client.query("SELECT count(*) FROM bench")
                if answer.rows[0][0] == total and not answer.partial:
                    break
                time.sleep(0.05)
            visible = time.perf_counter() - started
            mode = "ephemeral (in-memory)" if ephemeral else "durable"
            print(
                f"end-to-end, {mode} broker: {files} reports x {cases_per_file} testcases "
                f"= {total} events"
            )
            print(f"  start of an empty cluster until ready  {ready:5.2f} s")
            print(f"  upload until Kafka ack   {acked:7.2f} s   {total / acked:10.0f} testcases/s")
            print(
                f"  until all queryable      {visible:7.2f} s   {total / visible:10.0f} testcases/s"
            )
            for sql in QUERIES:
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    client.query(sql)
                    times.append(time.perf_counter() - t0)
                print(f"  query {statistics.median(times) * 1000:7.1f} ms  {sql}")
            client.close()
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], default=[])
    parser.add_argument("--files", type=int, default=40, help="reports (ingest, end-to-end)")
    parser.add_argument("--cases-per-file", type=int, default=5000)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--large-mb", type=int, default=200, help="size of the large report")
    parser.add_argument(
        "--large-json-events", type=int, default=1_000_000, help="events (large-json)"
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="events (storage, query)")
    parser.add_argument("--days", type=int, default=14, help="days of reports (limits)")
    parser.add_argument("--samples", type=int, default=100, help="uploads timed (freshness)")
    parser.add_argument("--json-lines", type=int, default=1_000_000, help="events (json-upload)")
    parser.add_argument("--small-files", type=int, default=1000, help="reports (small-files)")
    parser.add_argument(
        "--runs", type=int, default=10, help="runs of each command (startup, cli-query)"
    )
    parser.add_argument("--cli-events", type=int, default=1_000_000, help="events (cli-query)")
    parser.add_argument("--link-events", type=int, default=1_000_000, help="events (links)")
    parser.add_argument(
        "--apply-events", type=int, default=2_000_000, help="events (storage-apply)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flakehouse-bench-") as secrets:
        # As in production and in the tests: every service a benchmark starts serves TLS and
        # checks tokens, with a CA and tokens of the run's own (tests/credentials.py).
        credentials.install(Path(secrets) / "pki")
        for name in args.names or list(BENCHMARKS):
            BENCHMARKS[name](args)
            print(flush=True)


BENCHMARKS = {
    "ingest": lambda a: ingest.throughput(a.files, a.cases_per_file, a.uploaders),
    "large": lambda a: ingest.large(a.large_mb),
    "large-json": lambda a: ingest.large_json(a.large_json_events),
    "end-to-end": lambda a: [
        end_to_end(a.files, a.cases_per_file, a.uploaders, ephemeral) for ephemeral in (False, True)
    ],
    "freshness": lambda a: [ack_to_visible(a.samples, ephemeral) for ephemeral in (False, True)],
    "storage": lambda a: storage.storage(a.events),
    "query": lambda a: query.query(a.events),
    "limits": lambda a: limits.back_under_limit(a.days, a.cases_per_file),
    "parsing": lambda a: parsing(),
    "fanout": lambda a: fanout(),
    "groups": lambda a: groups_memory(),
    "json-upload": lambda a: uploads.json_upload(a.json_lines),
    "small-files": lambda a: uploads.small_files(a.small_files),
    "startup": lambda a: startup(a.runs),
    "cli-query": lambda a: cli_query(a.cli_events, a.runs),
    "links": lambda a: links.pull(a.link_events),
    "storage-apply": lambda a: storage_apply(a.apply_events, (1000, 10)),
}


if __name__ == "__main__":
    main()
