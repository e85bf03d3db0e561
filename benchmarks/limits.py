"""How fast a dataset over its stored-bytes limit comes back under it, on a local cluster with
the default settings (storage reports usage every 10 s, quota recomputes cutoffs every 5 s and
publishes a new one 10 s before storage may delete under it).

A dataset gets `days` days of generated JUnit reports, one upload per day (each its own sealed
segment: storage seals after 1 s here, and the uploads are 1.5 s apart). Then it gets a limit of
half its logical size, and the benchmark times, from the SetQuota, until quota's usage shows a
cutoff, and until it shows the dataset under the limit."""

from __future__ import annotations

import re
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.junitgen import report
from flakehouse.client import Client
from flakehouse.client.client import offsets_of
from flakehouse.quota.v1 import quota_pb2
from tests.localcluster import RunningCluster

DATASET = "capped"
SEAL_AGE = "FLAKEHOUSE_STORAGE_SEAL_AGE_S"
STAMP = re.compile(rb'timestamp="[^"]*"')


def _usage(client: Client) -> quota_pb2.DatasetUsage | None:
    found = [u for u in client.usage(DATASET) if u.dataset == DATASET]
    return found[0] if found else None


def _wait(check: object, what: str, timeout_s: float = 300) -> float:
    started = time.perf_counter()
    while not check():  # type: ignore[operator]
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        time.sleep(0.1)
    return time.perf_counter() - started


def back_under_limit(days: int, cases_per_day: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Segments sealed after 1 s (default 10 s) and uploads 1.5 s apart: each day is its own
        # segment, as when CI reports arrive over days. The limits' timing is all default.
        cluster = RunningCluster(
            Path(tmp) / "cluster", storage_nodes=2, partitions=8, env={SEAL_AGE: "1"}
        )
        try:
            cluster.wait_ready()
            client = Client.from_cluster_file(cluster.cluster_path, timeout_s=60)
            client.create_dataset(DATASET)
            now = datetime.now(UTC)
            uploads = []
            for day in range(days, 0, -1):
                at = (now - timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%S")
                data = STAMP.sub(f'timestamp="{at}"'.encode(), report(day, cases_per_day))
                uploads.append(client.upload(data, dataset=DATASET, filename=f"day-{day}.xml"))
                time.sleep(1.5)
            total = sum(u.events for u in uploads)
            answer = client.query(f"SELECT count(*) FROM {DATASET}", after=offsets_of(uploads))
            assert answer.rows == [[total]], answer.rows

            def reported() -> bool:
                usage = _usage(client)
                return usage is not None and usage.rows == total and usage.bytes > 0

            _wait(reported, "usage of every event reported")
            full = _usage(client)
            assert full is not None
            limit = full.bytes // 2
            client.set_quota(DATASET, max_stored_bytes=limit)
            started = time.perf_counter()

            def cut() -> bool:
                usage = _usage(client)
                return usage is not None and usage.cutoff.cutoff_us > 0

            to_cutoff = _wait(cut, "a cutoff")

            def under() -> bool:
                usage = _usage(client)
                return usage is not None and 0 < usage.bytes <= limit

            _wait(under, "back under the limit")
            to_under = time.perf_counter() - started
            left = client.query(f"SELECT count(*) FROM {DATASET}").rows[0][0]
            print(
                f"stored-bytes limit: {days} days x {cases_per_day} testcases, "
                f"{full.bytes / 2**20:.1f} MiB logical, limit {limit / 2**20:.1f} MiB"
            )
            print(f"  limit set until a cutoff      {to_cutoff:7.1f} s")
            print(f"  limit set until under it      {to_under:7.1f} s")
            print(f"  events answered after         {left} of {total}")
            client.close()
        finally:
            cluster.stop()
