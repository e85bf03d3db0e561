"""Read-your-writes: a job uploads, then asks at once, passing the offsets its uploads got; the
answer includes them on the first try, with no polling, every time."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.junitgen import report
from flakehouse.client import Client
from flakehouse.client.client import offsets_of
from tests.localcluster import RunningCluster

pytestmark = [pytest.mark.processes, pytest.mark.broker]


def test_a_query_with_the_uploads_offsets_sees_them_at_once(tmp_path: Path) -> None:
    cluster = RunningCluster(tmp_path / "cluster", storage_nodes=2, partitions=4)
    try:
        cluster.wait_ready()
        client = Client.from_cluster_file(cluster.cluster_path)
        uploads = []
        expected = 0
        for round_ in range(5):
            batch = [
                client.upload(report(round_ * 10 + i, 3000), dataset="ryw", filename=f"{i}.xml")
                for i in range(3)
            ]
            uploads.extend(batch)
            expected += sum(u.events for u in batch)
            answer = client.query(
                "SELECT count(*) FROM ryw", after=offsets_of(uploads), timeout_ms=10_000
            )
            assert not answer.partial, answer.missing_partitions
            assert answer.rows == [[expected]], f"round {round_}"
        client.close()

        # The same from a CI job's shell: ingest records its offsets, query waits for them.
        offsets = tmp_path / "offsets.json"
        for round_ in range(3):
            report_file = tmp_path / f"cli-{round_}.xml"
            report_file.write_bytes(report(1000 + round_, 2000))
            cluster.cli(
                "ingest", "--dataset", "ryw", "--offsets-file", str(offsets), str(report_file)
            )
            expected += 2000
            answer = cluster.query_json("SELECT count(*) FROM ryw", "--after", str(offsets))
            assert answer["rows"] == [[expected]] and not answer["partial"], f"cli round {round_}"
    finally:
        cluster.stop()
