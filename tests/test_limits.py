"""Every dataset limit kept, on a local cluster (`flakehouse up` as processes, real broker):
retention answers only recent events, the same from either replica, and storage deletes what
expired; a dataset over its stored-bytes limit comes back under it and keeps its newest events;
a dataset deleted and created again holds only its new events; a query past the concurrency
limit is refused with a retry delay, also when the other query runs in another query process;
bad limits change nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flakehouse.client.client import Client, UploadResult, offsets_of
from flakehouse.common.v1 import plan_pb2
from flakehouse.core.errors import ResourceExhausted
from flakehouse.core.net import free_port
from flakehouse.quota.v1 import quota_pb2
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc
from tests import credentials
from tests.localcluster import RunningCluster, pid_alive
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]

PARTITIONS = 2
ENV = {
    "FLAKEHOUSE_REPLICATION_NODE_TIMEOUT_S": "3",
    "FLAKEHOUSE_REPLICATION_HEARTBEAT_INTERVAL_S": "0.5",
    "FLAKEHOUSE_REPLICATION_RECONCILE_INTERVAL_S": "0.5",
    # Each upload below is its own sealed segment: uploads are a second apart and seal at 0.5 s.
    "FLAKEHOUSE_STORAGE_SEAL_AGE_S": "0.5",
    # No merging of small segments here: it would mix old and new events in one segment, which
    # is then kept (hidden by the cutoff) until its newest event expires too.
    "FLAKEHOUSE_STORAGE_COMPACTION_INTERVAL_S": "3600",
    "FLAKEHOUSE_STORAGE_USAGE_INTERVAL_S": "0.5",
    "FLAKEHOUSE_QUOTA_CUTOFF_INTERVAL_S": "0.5",
    "FLAKEHOUSE_QUOTA_DROP_GRACE_S": "1",
}


def events(count: int, at: datetime, prefix: str) -> bytes:
    return b"".join(
        json.dumps(
            {
                "timestamp": (at + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
                "name": f"{prefix}-{i}",
                "status": "failed" if i % 4 == 0 else "passed",
                "payload": "x" * 200,
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def direct_count(
    address: str, dataset: str, start_us: int | None = None, partitions: int = PARTITIONS
) -> int:
    """count(*) of every partition straight from one storage node, from `start_us` on. A node
    that deleted events after that start declines (its drop watermark): see held_rows."""
    plan = plan_pb2.QueryPlan(
        ir_version=1,
        dataset=dataset,
        aggregates=[plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)],
    )
    if start_us is not None:
        plan.time_range.start_us = start_us
    with credentials.channel(address) as channel:
        response = storage_pb2_grpc.StorageServiceStub(channel).ExecuteFragment(
            storage_pb2.ExecuteFragmentRequest(plan=plan, partitions=list(range(partitions))),
            timeout=10,
        )
    assert not response.unavailable, list(response.unavailable)
    counts = response.result.group_columns.states[0].counts
    return int(counts[0]) if len(counts) else 0


def held_rows(address: str, dataset: str, partitions: int = PARTITIONS) -> int:
    """Every event one storage node still holds, deleted or not by the cutoff (DescribeFields:
    how many rows hold a timestamp)."""
    with credentials.channel(address) as channel:
        response = storage_pb2_grpc.StorageServiceStub(channel).DescribeFields(
            storage_pb2.DescribeFieldsRequest(dataset=dataset, partitions=list(range(partitions))),
            timeout=10,
        )
    assert not response.unavailable, list(response.unavailable)
    return sum(f.count for f in response.fields if f.name == "timestamp")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    running = RunningCluster(
        tmp_path_factory.mktemp("limits") / "cluster",
        storage_nodes=2,
        partitions=PARTITIONS,
        env=ENV,
    )
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(cluster: RunningCluster) -> Iterator[Client]:
    with Client.from_cluster_file(cluster.cluster_path, timeout_s=30) as client:
        yield client


def storage_nodes(cluster: RunningCluster) -> dict[str, dict[str, Any]]:
    return {node["node_id"]: node for node in cluster.info()["storage"]}


def upload(client: Client, dataset: str, data: bytes, name: str) -> UploadResult:
    result = client.upload(data, dataset=dataset, filename=f"{name}.jsonl")
    time.sleep(1.0)  # the next upload lands in a segment of its own
    return result


def count(client: Client, sql: str, after: dict[str, dict[int, int]] | None = None) -> int:
    answer = client.query(sql, after=after, timeout_ms=10_000)
    assert not answer.partial, answer.missing_partitions
    return int(answer.rows[0][0])


def usage_of(client: Client, dataset: str) -> quota_pb2.DatasetUsage | None:
    found = [u for u in client.usage(dataset) if u.dataset == dataset]
    return found[0] if found else None


def wait_restarted(cluster: RunningCluster, node_id: str, old_pid: int) -> None:
    """Until `flakehouse up` has started the node again (a new, live pid)."""

    def back() -> bool:
        pid = storage_nodes(cluster)[node_id]["pid"]
        return pid != old_pid and pid_alive(pid)

    eventually(back, f"{node_id} restarted")


def answers(cluster: RunningCluster, node_id: str, dataset: str) -> bool:
    """Whether the node answers for every partition (it declines until caught up)."""
    try:
        held_rows(storage_nodes(cluster)[node_id]["grpc"], dataset)
    except (grpc.RpcError, AssertionError):
        return False
    return True


def test_retention_answers_only_recent_events_from_either_replica(
    cluster: RunningCluster, client: Client
) -> None:
    now = datetime.now(UTC)
    client.create_dataset("recent", partitions=PARTITIONS, retention_seconds=2 * 3600)
    uploads = [
        upload(client, "recent", events(300, now - timedelta(hours=hours), f"h{hours}"), "old")
        for hours in (5, 3)  # expired: older than 2 hours
    ]
    uploads.append(upload(client, "recent", events(200, now - timedelta(minutes=30), "n"), "new"))
    after = offsets_of(uploads)

    assert count(client, "SELECT count(*) FROM recent", after) == 200
    explain = client.query("EXPLAIN SELECT count(*) FROM recent")
    assert any("cutoff" in str(row[0]) and "retention" in str(row[0]) for row in explain.rows)

    # Storage deletes the expired segments on both replicas; the fresh events stay.
    nodes = storage_nodes(cluster)
    for node in nodes.values():
        eventually(lambda n=node: held_rows(n["grpc"], "recent") == 200, "expired rows deleted")

    # The same answer from each replica alone.
    for node_id in sorted(nodes):
        (cluster.data_dir / "hold").mkdir(exist_ok=True)
        hold = cluster.data_dir / "hold" / node_id
        hold.touch()
        victim = storage_nodes(cluster)[node_id]["pid"]
        try:
            os.kill(victim, signal.SIGKILL)
            assert count(client, "SELECT count(*) FROM recent") == 200
        finally:
            hold.unlink()
        wait_restarted(cluster, node_id, victim)
        eventually(lambda n=node_id: answers(cluster, n, "recent"), f"{node_id} answers again")


def test_over_the_stored_bytes_limit_the_oldest_go_and_both_replicas_agree(
    cluster: RunningCluster, client: Client
) -> None:
    now = datetime.now(UTC)
    client.create_dataset("capped", partitions=PARTITIONS)
    uploads = [
        upload(client, "capped", events(300, now - timedelta(days=day), f"d{day}"), f"d{day}")
        for day in range(6, 0, -1)  # six days of 300 events each, oldest first
    ]
    uploads.append(upload(client, "capped", events(100, now - timedelta(minutes=5), "new"), "new"))
    assert count(client, "SELECT count(*) FROM capped", offsets_of(uploads)) == 1900

    def logical_bytes() -> int:
        usage = usage_of(client, "capped")
        return int(usage.bytes) if usage and usage.rows == 1900 else 0

    full = eventually(logical_bytes, "usage of all 1900 events reported")
    limit = full // 2
    started = time.monotonic()
    client.set_quota("capped", max_stored_bytes=limit)

    def under_limit() -> Any:
        usage = usage_of(client, "capped")
        return usage if usage and usage.bytes <= limit and usage.cutoff.cutoff_us else None

    usage = eventually(under_limit, "dataset back under its stored-bytes limit", 90)
    print(f"\nback under the stored-bytes limit in {time.monotonic() - started:.1f}s")
    answered = count(client, "SELECT count(*) FROM capped")
    assert 100 <= answered < 1900
    # The newest events are all kept, and what is answered is the newest days.
    assert count(client, "SELECT count(*) FROM capped WHERE name LIKE 'new-%'") == 100
    assert count(client, "SELECT count(*) FROM capped WHERE name LIKE 'd6-%'") == 0

    # Both replicas answer the same for the cutoff: the query's answer.
    cutoff_us = usage.cutoff.cutoff_us
    for node in storage_nodes(cluster).values():
        assert direct_count(node["grpc"], "capped", cutoff_us) == answered


def test_deleted_and_created_again_holds_only_the_new_events(
    cluster: RunningCluster, client: Client
) -> None:
    now = datetime.now(UTC)
    first = upload(client, "reborn", events(150, now, "old"), "old")
    assert count(client, "SELECT count(*) FROM reborn", offsets_of([first])) == 150
    client.delete_dataset("reborn")
    created = client.create_dataset("reborn", partitions=PARTITIONS)
    assert created.dataset.generation == 2
    second = upload(client, "reborn", events(40, now, "new"), "new")
    after = offsets_of([second])

    def complete_answer() -> int:
        answer = client.query("SELECT count(*) FROM reborn", after=after, timeout_ms=10_000)
        # While the nodes move to the new generation an answer may be partial, never old
        # (raised past `eventually`, which retries AssertionError only).
        if answer.rows[0][0] not in range(41):
            raise RuntimeError(f"old events in the answer: {answer}")
        assert not answer.partial, answer.missing_partitions
        return int(answer.rows[0][0])

    assert eventually(complete_answer, "a complete answer") == 40
    assert count(client, "SELECT count(*) FROM reborn WHERE name LIKE 'old-%'") == 0
    for node in storage_nodes(cluster).values():
        eventually(lambda n=node: held_rows(n["grpc"], "reborn") == 40, "old data deleted")
    listed = [d.name for d in client.list_datasets()]
    assert listed.count("reborn") == 1


def start_query_process(cluster: RunningCluster, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A second query process against the same cluster, as the chart runs several."""
    info = cluster.info()
    port = free_port()
    env = {
        **os.environ,
        "FLAKEHOUSE_QUERY_HOST": "127.0.0.1",
        "FLAKEHOUSE_QUERY_PORT": str(port),
        "FLAKEHOUSE_QUERY_METRICS_PORT": str(free_port()),
        "FLAKEHOUSE_QUERY_REPLICATION_ADDRESS": info["services"]["replication"]["grpc"],
        "FLAKEHOUSE_QUERY_QUOTA_ADDRESS": info["services"]["quota"]["grpc"],
        "FLAKEHOUSE_QUERY_KAFKA_BOOTSTRAP": info["kafka"],  # the token topic
    }
    log = (tmp / "query-2.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "flakehouse.query"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    address = f"127.0.0.1:{port}"
    eventually(lambda: serving(address), "the second query process serving")
    return process, address


def serving(address: str) -> bool:
    with credentials.channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def test_past_the_concurrency_limit_a_query_is_refused_with_a_retry_delay(
    cluster: RunningCluster, client: Client, tmp_path: Path
) -> None:
    client.create_dataset("busy", partitions=PARTITIONS, max_concurrent_queries=1)
    written = upload(client, "busy", events(10, datetime.now(UTC), "e"), "e")
    assert count(client, "SELECT count(*) FROM busy", offsets_of([written])) == 10

    # A query that holds its slot for its whole deadline: it waits for an offset never written.
    never = {"busy": {p: 10**9 for p in range(PARTITIONS)}}
    holder = threading.Thread(
        target=lambda: client.query("SELECT count(*) FROM busy", after=never, timeout_ms=15_000),
        daemon=True,
    )
    process, address = start_query_process(cluster, tmp_path)
    try:
        holder.start()
        time.sleep(1.0)
        for query_address in (cluster.info()["services"]["query"]["grpc"], address):
            impatient = Client(query=query_address, retries=0, timeout_s=30)
            try:
                refused = eventually(
                    lambda c=impatient: _refusal(c), f"refusal from {query_address}", 30
                )
            finally:
                impatient.close()
            assert refused.retry_after_ms and refused.retry_after_ms > 0
            assert "max_concurrent_queries" in refused.message
        holder.join(30)
        # With its retries, the client honours the delay and gets its answer once the slot is free.
        assert count(client, "SELECT count(*) FROM busy") == 10
    finally:
        process.terminate()
        process.wait(30)


def _refusal(client: Client) -> ResourceExhausted | None:
    try:
        client.query("SELECT count(*) FROM busy", timeout_ms=4000)
    except ResourceExhausted as exc:
        return exc
    return None


def cli_fails(cluster: RunningCluster, *args: str) -> str:
    result = cluster.cli(*args, "--cluster", str(cluster.cluster_path), check=False)
    assert result.returncode == 2, (args, result.returncode, result.stdout, result.stderr)
    # argparse's own form for a bad option value: "flakehouse quota set: error: argument ...".
    assert result.stderr.startswith("error: ") or ": error: " in result.stderr, result.stderr
    return result.stderr.splitlines()[-1]


def test_bad_limits_are_refused_and_change_nothing(cluster: RunningCluster, client: Client) -> None:
    client.create_dataset("guarded", partitions=PARTITIONS, retention_seconds=86400)
    before = client.get_quota("guarded")
    assert "size" in cli_fails(cluster, "quota", "set", "guarded", "--max-stored-bytes=-5GB")
    assert "unit" in cli_fails(cluster, "quota", "set", "guarded", "--max-stored-bytes", "5XB")
    assert "shorter than 1m" in cli_fails(cluster, "quota", "set", "guarded", "--retention", "30s")
    assert "not an age" in cli_fails(
        cluster, "quota", "set", "guarded", "--retention", "3 fortnights"
    )
    assert "nosuch" in cli_fails(cluster, "quota", "set", "nosuch", "--retention", "1d")
    assert "shorter than 1m" in cli_fails(
        cluster, "datasets", "create", "young", "--retention", "10s"
    )
    assert client.get_quota("guarded") == before
    assert "young" not in [d.name for d in client.list_datasets()]
