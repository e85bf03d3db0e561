"""Crash safety of storage: under continuous ingest, storage nodes are killed with SIGKILL again
and again at random moments (seeded), including while they seal and compact segments; once
ingest stops, every node holds exactly the events that were sent: nothing lost, nothing doubled.
Seal size and age and the compaction interval are small so that kills land in the middle of
seals and merges."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from benchmarks.junitgen import report
from flakehouse.client import Client
from tests.localcluster import RunningCluster, node_counts, pid_alive
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]
PARTITIONS = 4
KILLS = 5
STORAGE_ENV = {
    "FLAKEHOUSE_STORAGE_SEAL_ROWS": "2000",
    "FLAKEHOUSE_STORAGE_SEAL_AGE_S": "0.3",
    "FLAKEHOUSE_STORAGE_COMPACTION_INTERVAL_S": "1",
}


def restarted(cluster: RunningCluster, victim: dict[str, Any]) -> bool:
    """The killed node runs again, under a new pid."""
    now = next(n for n in cluster.info()["storage"] if n["node_id"] == victim["node_id"])
    return bool(now["pid"] != victim["pid"] and pid_alive(now["pid"]))


@pytest.mark.parametrize("seed", [11, 29])
def test_repeated_sigkill_during_continuous_ingest_loses_and_doubles_nothing(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    cluster = RunningCluster(
        tmp_path / "cluster", storage_nodes=2, partitions=PARTITIONS, env=STORAGE_ENV
    )
    try:
        cluster.wait_ready()
        sent: Counter[str] = Counter()
        stop = threading.Event()
        failures: list[BaseException] = []

        def feed() -> None:
            client = Client.from_cluster_file(cluster.cluster_path, retries=8)
            try:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    data = report(seed * 100_000 + i, cases=500 + (i * 37) % 1500)
                    result = client.upload(data, dataset="crash", filename=f"r{i}.xml")
                    sent.update(result.by_status)
            except BaseException as exc:  # reported below
                failures.append(exc)
            finally:
                client.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 2.0))
            victim = rng.choice(cluster.info()["storage"])
            os.kill(victim["pid"], signal.SIGKILL)
            # The supervisor restarts it; wait for that before the next kill.
            eventually(
                lambda victim=victim: restarted(cluster, victim),
                f"{victim['node_id']} restarted",
                30,
                interval_s=0.05,
            )
        stop.set()
        feeder.join(120)
        assert not failures, failures
        assert sum(sent.values()) > 20_000, "too little was ingested for the test to mean much"

        def every_node_holds_all() -> bool:
            held = [node_counts(n["grpc"], "crash", PARTITIONS) for n in cluster.info()["storage"]]
            assert held and all(counts == dict(sent) for counts in held), f"nodes hold {held}"
            return True

        eventually(
            every_node_holds_all,
            f"every node holds all sent ({dict(sent)})",
            90,
            interval_s=0.5,
            retry_on=(grpc.RpcError, LookupError),
        )
    finally:
        cluster.stop()
