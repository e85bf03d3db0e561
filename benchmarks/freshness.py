"""Acknowledgement-to-visible latency on a local cluster (`flakehouse up`, 2 storage nodes):
the time from the moment ingest acknowledged an upload to the moment a query first counts it,
on an idle cluster and while other uploads stream into another dataset. Each sample uploads one
small report and polls `count(*)` of its dataset every 5 ms; p50 and p99 over the samples."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.junitgen import report
from flakehouse.client import Client
from tests.localcluster import RunningCluster

POLL_S = 0.005


def _latencies(client: Client, dataset: str, samples: int, first_seed: int) -> list[float]:
    latencies = []
    expected = 0
    for i in range(samples):
        result = client.upload(report(first_seed + i, cases=10), dataset=dataset)
        acked = time.perf_counter()
        expected += result.events
        while True:
            answer = client.query(f"SELECT count(*) FROM {dataset}")
            if not answer.partial and answer.rows and answer.rows[0][0] >= expected:
                break
            time.sleep(POLL_S)
        latencies.append(time.perf_counter() - acked)
    return latencies


def _print(label: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(
        f"  {label:<28} p50 {statistics.median(ordered) * 1000:7.1f} ms"
        f"   p99 {p99 * 1000:7.1f} ms   ({len(ordered)} uploads)"
    )


def ack_to_visible(samples: int, ephemeral: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RunningCluster(
            Path(tmp) / "cluster", storage_nodes=2, partitions=8, ephemeral=ephemeral
        )
        try:
            cluster.wait_ready()
            client = Client.from_cluster_file(cluster.cluster_path)
            mode = "ephemeral" if ephemeral else "durable"
            print(f"ack-to-visible ({mode} broker):")
            _latencies(client, "probe", 3, 0)  # the dataset is created, replicas assigned
            _print("idle", _latencies(client, "probe", samples, 1000))
            stop = threading.Event()

            def load() -> None:
                loader = Client.from_cluster_file(cluster.cluster_path)
                seed = 0
                while not stop.is_set():
                    loader.upload(report(seed, cases=2000), dataset="load")
                    seed += 1
                loader.close()

            loader = threading.Thread(target=load)
            loader.start()
            try:
                time.sleep(1)
                _print("under steady ingest", _latencies(client, "probe", samples, 5000))
            finally:
                stop.set()
                loader.join()
            client.close()
        finally:
            cluster.stop()
