"""Exactly once as users see it: the ingest process is killed with SIGKILL in the middle of an
upload, after Kafka already acknowledged part of it; the client's retry goes to the restarted
process, and the counts afterwards are exact. Storage dropping duplicates shows that the first
attempt really did write part of the upload. And killed while it receives a large upload, the
restarted process continues from the bytes spooled before the kill."""

from __future__ import annotations

import io
import os
import re
import signal
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.junitgen import report
from flakehouse.client import Client, UploadResult
from flakehouse.client.uploads import WINDOW_BYTES, UploadProgress
from flakehouse.events.junit import parse_junit_all
from tests.localcluster import RunningCluster
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]
CASES = 300_000


def metric(address: str, name: str) -> float:
    body = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body, re.M))


def test_ingest_killed_mid_upload_then_retried_counts_exactly(tmp_path: Path) -> None:
    data = report(seed=7, cases=CASES)
    expected = Counter(
        str(e["status"])
        for e in parse_junit_all(io.BytesIO(data), filename="big.xml", upload_time_us=0)
    )
    cluster = RunningCluster(tmp_path / "cluster", storage_nodes=2, partitions=2)
    try:
        cluster.wait_ready()
        ingest = cluster.info()["services"]["ingest"]
        client = Client.from_cluster_file(cluster.cluster_path, retries=8)
        outcome: dict[str, UploadResult | BaseException] = {}

        def upload() -> None:
            try:
                outcome["result"] = client.upload(data, dataset="crash", filename="big.xml")
            except BaseException as exc:  # reported by the assertion below
                outcome["result"] = exc

        sender = threading.Thread(target=upload)
        sender.start()
        # Polled fast: the kill must land while the upload is still being produced.
        eventually(
            lambda: metric(ingest["metrics"], "flakehouse_ingest_records_produced_total") >= 1,
            "ingest produced a record",
            60,
            interval_s=0.005,
        )
        os.kill(ingest["pid"], signal.SIGKILL)
        sender.join(120)
        result = outcome["result"]
        assert isinstance(result, UploadResult), result
        assert result.events == CASES
        assert cluster.info()["services"]["ingest"]["pid"] != ingest["pid"]

        want = sorted([status, n] for status, n in expected.items())

        def complete() -> bool:
            answer = cluster.query("SELECT status, count(*) FROM crash GROUP BY status")
            assert not answer["partial"] and sorted(answer["rows"]) == want, answer["rows"]
            return True

        eventually(complete, f"a complete answer of {want}", 60)
        dropped = sum(
            metric(node["metrics"], "flakehouse_storage_duplicates_dropped_total")
            for node in cluster.info()["storage"]
        )
        assert dropped > 0, "the first attempt wrote nothing: the kill came too early or late"
        client.close()
    finally:
        cluster.stop()


def test_ingest_killed_while_receiving_the_upload_resumes_from_its_spool(tmp_path: Path) -> None:
    lines = 200_000
    data = b"".join(
        b'{"name": "test_%d", "suite": "suite%d", "status": "%s", "duration": %d}\n'
        % (i, i % 13, b"failed" if i % 10 == 0 else b"passed", i % 1000)
        for i in range(lines)
    )
    cluster = RunningCluster(tmp_path / "cluster", storage_nodes=2, partitions=2)
    try:
        cluster.wait_ready()
        ingest = cluster.info()["services"]["ingest"]
        client = Client.from_cluster_file(cluster.cluster_path)
        killed: list[int] = []

        def kill_a_third_of_the_way(progress: UploadProgress) -> None:
            if not killed and progress.received_bytes > len(data) // 3:
                killed.append(progress.received_bytes)
                os.kill(ingest["pid"], signal.SIGKILL)

        result = client.upload(
            data,
            dataset="resumed",
            filename="events.jsonl",
            on_progress=kill_a_third_of_the_way,
        )
        assert killed and cluster.info()["services"]["ingest"]["pid"] != ingest["pid"]
        assert result.events == lines and result.streams >= 2  # refused while it restarted
        # What the dead process had taken but not acknowledged is sent again: one window at most.
        assert len(data) < result.sent_bytes <= len(data) + WINDOW_BYTES

        def complete() -> bool:
            answer = cluster.query("SELECT status, count(*) FROM resumed GROUP BY status")
            assert not answer["partial"], answer
            assert sorted(answer["rows"]) == [["failed", lines // 10], ["passed", lines * 9 // 10]]
            return True

        eventually(complete, "every event of the resumed upload, once", 60)
        restarted = cluster.info()["services"]["ingest"]
        assert metric(restarted["metrics"], "flakehouse_ingest_uploads_resumed_total") == 1
        client.close()
    finally:
        cluster.stop()
