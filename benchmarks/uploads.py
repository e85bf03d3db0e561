"""Uploads through the CLI, whole process against a local cluster (`flakehouse up`: broker, five
services, 2 storage nodes, 8 partitions), every figure until every event is queryable:

- json: one JSON-lines file of `--json-lines` events through `flakehouse ingest`, alone and
  then again while other uploads and queries run (4 small uploads and a query in a loop);
- small-files: `--small-files` JUnit reports of 5 testcases each in one `flakehouse ingest`
  command (a CI job's worth of small reports)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.junitgen import json_lines, report
from flakehouse.client import Client
from tests.localcluster import RunningCluster


def _ingest(cluster: RunningCluster, dataset: str, *paths: Path) -> float:
    """Seconds `flakehouse ingest` took, as a whole process."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "flakehouse.client.cli", "ingest"]
    command += ["--cluster", str(cluster.cluster_path), "--dataset", dataset, *map(str, paths)]
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"flakehouse ingest failed:\n{done.stdout}\n{done.stderr}")
    summary = done.stdout.strip().splitlines()[-2:]  # the totals and the server's time
    print("\n".join("    " + line for line in summary))
    return elapsed


def _until_queryable(client: Client, dataset: str, events: int, started: float) -> float:
    while True:
        answer = client.query(f"SELECT count(*) FROM {dataset}")
        if answer.rows and answer.rows[0][0] == events and not answer.partial:
            return time.perf_counter() - started
        time.sleep(0.05)


class _Load:
    """Other work on the cluster meanwhile: small uploads and a query, each in a loop."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stop = threading.Event()
        self.uploads = self.queries = 0
        self._threads = [threading.Thread(target=self._upload, args=(i,)) for i in range(4)]
        self._threads.append(threading.Thread(target=self._query))

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _upload(self, worker: int) -> None:
        seed = worker * 1_000_000
        while not self._stop.is_set():
            self._client.upload(report(seed, 200), dataset="other", filename=f"o{seed}.xml")
            seed += 1
            self.uploads += 1

    def _query(self) -> None:
        while not self._stop.is_set():
            self._client.query("SELECT status, count(*) FROM other GROUP BY status")
            self.queries += 1


@contextmanager
def _local_cluster(directory: Path) -> Iterator[tuple[RunningCluster, Client]]:
    """A local cluster, ready and warm (one upload went through), and a client of it."""
    cluster = RunningCluster(directory / "cluster", storage_nodes=2, partitions=8)
    try:
        cluster.wait_ready()
        with Client.from_cluster_file(cluster.cluster_path) as client:
            client.upload(report(0, 10), dataset="other", filename="first.xml")
            yield cluster, client
    finally:
        cluster.stop()


def json_upload(lines: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(json_lines(seed=1, cases=lines))
        size = path.stat().st_size
        with _local_cluster(Path(tmp)) as (cluster, client):
            print(f"json lines through the CLI: {lines:,} events, {size / 1e6:.0f} MB, one file")
            for label, dataset in (("alone", "json_alone"), ("with other load", "json_loaded")):
                started = time.perf_counter()
                if dataset == "json_alone":
                    acked = _ingest(cluster, dataset, path)
                    load = ""
                else:
                    with _Load(client) as other:
                        acked = _ingest(cluster, dataset, path)
                    load = f" ({other.uploads} other uploads, {other.queries} queries meanwhile)"
                visible = _until_queryable(client, dataset, lines, started)
                print(
                    f"  {label}: CLI done {acked:6.1f} s {lines / acked:9,.0f} events/s; "
                    f"all queryable {visible:6.1f} s {lines / visible:9,.0f} events/s{load}"
                )


def small_files(files: int, cases: int = 5) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        reports = Path(tmp) / "reports"
        reports.mkdir()
        for seed in range(files):
            (reports / f"report-{seed:05d}.xml").write_bytes(report(seed, cases, suites=3))
        with _local_cluster(Path(tmp)) as (cluster, client):
            print(f"many small files through the CLI: {files} reports x {cases} testcases")
            started = time.perf_counter()
            acked = _ingest(cluster, "small", reports)
            visible = _until_queryable(client, "small", files * cases, started)
            print(
                f"  one `flakehouse ingest DIR`: {acked:5.1f} s ({files / acked:6.0f} files/s); "
                f"all queryable {visible:5.1f} s"
            )
