"""A storage node killed with SIGKILL while it deletes expired segments: after its restart it
holds every event that should stay and none that it had dropped, and both replicas agree.

Each partition's drop is one RocksDB WriteBatch, so the kill lands between partitions: some
partitions dropped, the others not yet. The node is killed the moment its log says it dropped
the first partition's segments, with many small segments in many partitions so that the round
is still running."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from flakehouse.client.client import Client, UploadResult, offsets_of
from tests.localcluster import RunningCluster
from tests.support import eventually
from tests.test_limits import (
    direct_count,
    held_rows,
    storage_nodes,
    wait_restarted,
)

pytestmark = [pytest.mark.processes, pytest.mark.broker]

PARTITIONS = 16
ENV = {
    # A segment per upload (each poll's rows are sealed at once), and no merging of them.
    "FLAKEHOUSE_STORAGE_SEAL_ROWS": "1",
    "FLAKEHOUSE_STORAGE_COMPACTION_INTERVAL_S": "3600",
    "FLAKEHOUSE_STORAGE_USAGE_INTERVAL_S": "0.5",
    "FLAKEHOUSE_QUOTA_CUTOFF_INTERVAL_S": "0.5",
    "FLAKEHOUSE_QUOTA_DROP_GRACE_S": "1",
}
OLD_UPLOADS, OLD_EVENTS, FRESH_EVENTS = 240, 20, 500


def events(count: int, at: datetime, prefix: str) -> bytes:
    return b"".join(
        json.dumps(
            {
                "timestamp": (at + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "name": f"{prefix}-{i}",
                "status": "passed",
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[RunningCluster]:
    running = RunningCluster(tmp_path / "cluster", storage_nodes=2, partitions=PARTITIONS, env=ENV)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def test_sigkill_during_a_retention_drop_loses_and_resurrects_nothing(
    cluster: RunningCluster,
) -> None:
    now = datetime.now(UTC)
    client = Client.from_cluster_file(cluster.cluster_path, timeout_s=30)
    client.create_dataset("expiring", partitions=PARTITIONS)
    uploads: list[UploadResult] = [
        client.upload(
            events(OLD_EVENTS, now - timedelta(days=3, minutes=n), f"old{n}"),
            dataset="expiring",
            filename=f"old-{n}.jsonl",
        )
        for n in range(OLD_UPLOADS)
    ]
    time.sleep(1.0)  # the fresh events go into segments of their own
    uploads.append(
        client.upload(
            events(FRESH_EVENTS, now - timedelta(minutes=20), "fresh"),
            dataset="expiring",
            filename="fresh.jsonl",
        )
    )
    total = OLD_UPLOADS * OLD_EVENTS + FRESH_EVENTS
    answer = client.query("SELECT count(*) FROM expiring", after=offsets_of(uploads))
    assert answer.rows == [[total]] and not answer.partial

    nodes = storage_nodes(cluster)
    victim = nodes["storage-0"]
    log = cluster.data_dir / "logs" / "storage-0.log"
    logged_before = log.read_text().count("dropped segments")
    client.set_quota("expiring", retention_seconds=86400)

    # Kill at the first partition dropped.
    eventually(
        lambda: log.read_text().count("dropped segments") > logged_before,
        "a drop",
        60,
        interval_s=0.005,  # the kill must land in the middle of the drop round
    )
    os.kill(victim["pid"], signal.SIGKILL)
    dropped_before_kill = log.read_text().count("dropped segments") - logged_before
    print(f"\nkilled storage-0 after {dropped_before_kill} of {PARTITIONS} partitions dropped")

    wait_restarted(cluster, "storage-0", victim["pid"])
    address = storage_nodes(cluster)["storage-0"]["grpc"]
    cutoff_us = int((now - timedelta(days=1)).timestamp() * 1_000_000)

    # Nothing that should stay is lost: every fresh event, on the restarted node too.
    eventually(lambda: _exactly(_counts(address, cutoff_us), FRESH_EVENTS), "fresh on storage-0")
    # Nothing dropped comes back, and the rest of the expired segments go: the node ends with
    # exactly the fresh events, as its peer does.
    for node in storage_nodes(cluster).values():
        eventually(lambda n=node: _exactly(_held(n["grpc"]), FRESH_EVENTS), "expired all dropped")
    answer = client.query("SELECT count(*) FROM expiring")
    assert answer.rows == [[FRESH_EVENTS]] and not answer.partial
    client.close()


def _exactly(got: int, want: int) -> bool:
    assert got == want, f"{got} events, not {want}"
    return True


def _counts(address: str, start_us: int) -> int:
    try:
        return direct_count(address, "expiring", start_us, PARTITIONS)
    except grpc.RpcError:  # still starting
        return -1


def _held(address: str) -> int:
    try:
        return held_rows(address, "expiring", PARTITIONS)
    except grpc.RpcError:  # still starting
        return -1
