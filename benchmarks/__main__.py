"""Runs the benchmarks and prints their figures.

end-to-end: a local cluster (`flakehouse up` as processes: broker, five services, 2 storage
nodes, 8 partitions); generated JUnit reports uploaded through the client; it reports testcases
per second until Kafka acknowledged, the time until every event is queryable, and the latency
of a few queries (median of repeated runs)."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.junitgen import report
from flakehouse.client import Client
from tests.localcluster import RunningCluster

QUERIES = [
    "SELECT status, count(*) FROM bench GROUP BY status",
    "SELECT suite, count(*) AS runs, avg(duration), max(duration) FROM bench "
    "WHERE status = 'failed' GROUP BY suite ORDER BY runs DESC LIMIT 20",
    "SELECT time_bucket(timestamp, '1d'), count(*) FROM bench GROUP BY 1",
    "SELECT name, duration FROM bench WHERE duration > 1 ORDER BY duration DESC LIMIT 10",
]


def end_to_end(files: int, cases_per_file: int, uploaders: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RunningCluster(Path(tmp) / "cluster", storage_nodes=2, partitions=8)
        try:
            cluster.wait_ready()
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
            print(f"end-to-end: {files} reports x {cases_per_file} testcases = {total} events")
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
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--cases-per-file", type=int, default=2000)
    parser.add_argument("--uploaders", type=int, default=4)
    args = parser.parse_args()
    end_to_end(args.files, args.cases_per_file, args.uploaders)


if __name__ == "__main__":
    main()
