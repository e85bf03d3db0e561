"""The durable local cluster (issue 13): `flakehouse up` on an existing data directory resumes
where it was, after a clean stop and after every process of the cluster was SIGKILLed at once,
with every acknowledged event there exactly once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from benchmarks.junitgen import report
from flakehouse.client import Client
from tests.localcluster import RunningCluster, kill_everything
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]
PARTITIONS = 4
QUERIES = (
    "SELECT status, count(*) FROM ci GROUP BY status ORDER BY status",
    "SELECT count(DISTINCT name) FROM ci",
    "SELECT suite, max(duration) FROM ci GROUP BY suite ORDER BY suite LIMIT 20",
)


def upload(cluster: RunningCluster, seeds: range, sent: Counter[str]) -> None:
    client = Client.from_cluster_file(cluster.cluster_path)
    try:
        for seed in seeds:
            data = report(seed, cases=400 + seed % 7 * 100)
            sent.update(client.upload(data, dataset="ci", filename=f"r{seed}.xml").by_status)
    finally:
        client.close()


def complete_answers(cluster: RunningCluster, sent: Counter[str]) -> list[dict[str, Any]]:
    """The answers to QUERIES once the cluster answers completely with every event sent."""

    def complete() -> list[dict[str, Any]] | None:
        counts = cluster.query_json(QUERIES[0])
        assert not counts["partial"] and dict(counts["rows"]) == dict(sent), counts
        answers = [cluster.query_json(sql) for sql in QUERIES]
        return None if any(answer["partial"] for answer in answers) else answers

    return eventually(complete, f"complete answers with every event sent ({dict(sent)})", 90)


def strip_freshness(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers without their freshness, which names the replica that answered."""
    return [{k: v for k, v in answer.items() if k != "freshness"} for answer in answers]


def cluster_id(cluster: RunningCluster) -> str:
    status = cluster.cli("status", "--format", "json", "--cluster", str(cluster.cluster_path))
    return str(json.loads(status.stdout)["cluster_id"])


def test_resumes_after_a_clean_stop_and_after_every_process_is_killed(tmp_path: Path) -> None:
    data = tmp_path / "cluster"
    sent: Counter[str] = Counter()
    first = RunningCluster(data, storage_nodes=2, partitions=PARTITIONS)
    try:
        first.wait_ready()
        first.cli(
            "datasets", "create", "ci", "--retention", "400d", "--cluster", str(first.cluster_path)
        )
        upload(first, range(12), sent)
        before = complete_answers(first, sent)
        # Every answer says how fresh it is, partition by partition; idle, all up to date.
        freshness = before[0]["freshness"]
        assert sorted(p["partition"] for p in freshness["partitions"]) == list(range(PARTITIONS))
        assert (freshness["records_behind"], freshness["behind_ms"]) == (0, 0)
        plan = first.query_json("EXPLAIN " + QUERIES[0])["rows"]
        assert sum("(up to date)" in row[0] for row in plan) == PARTITIONS, plan
        identity = cluster_id(first)
        assert identity.startswith("fhc-")
    finally:
        first.stop()
    assert "stopped" in first.output.read_text()

    second = RunningCluster(data, storage_nodes=2, partitions=PARTITIONS, port_base=first.port_base)
    try:
        second.wait_ready()
        assert f"resuming from {data}" in second.output.read_text()
        assert cluster_id(second) == identity  # kept in Kafka, as durable as the events
        assert strip_freshness(complete_answers(second, sent)) == strip_freshness(before)
        quota = second.cli(
            "quota", "get", "ci", "--format", "json", "--cluster", str(second.cluster_path)
        )
        assert json.loads(quota.stdout)["limits"]["retention_seconds"] == 400 * 86400
        upload(second, range(12, 24), sent)
        assert kill_everything(second) >= 9  # up, objects, broker, 4 services, 2 storage nodes
    finally:
        second.stop()

    third = RunningCluster(data, storage_nodes=2, partitions=PARTITIONS, port_base=first.port_base)
    try:
        third.wait_ready()
        answers = complete_answers(third, sent)
        assert sum(count for _, count in answers[0]["rows"]) == sum(sent.values())
    finally:
        third.stop()
