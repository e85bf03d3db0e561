"""Replication under failures, on a local cluster (`flakehouse up` as processes) with 3 storage
nodes (and a fourth held back), 16 partitions, continuous ingest and queries:

- restarting the controller moves nothing;
- a storage node killed and kept down: queries stay complete, and once the controller's node
  timeout passes, its partitions are back to 2 online replicas by copying from peers;
- a node whose data directory is wiped bootstraps from peers, and answers are identical;
- a fourth node takes its share, and nothing is lost.

Each test prints what moved and how long repair took, straight to the terminal (also in
`make test`, where output is otherwise captured)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from flakehouse.client.client import Client, offsets_of
from flakehouse.client.status import status_dict
from flakehouse.common.v1 import plan_pb2
from flakehouse.replication.placement import NodeInfo, replicas_for
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc
from tests import credentials
from tests.localcluster import RunningCluster, pid_alive

pytestmark = [pytest.mark.processes, pytest.mark.broker]

PARTITIONS = 16
Capture = pytest.CaptureFixture[str]
NODE_TIMEOUT_S = 3.0
ENV = {
    "FLAKEHOUSE_REPLICATION_NODE_TIMEOUT_S": str(NODE_TIMEOUT_S),
    "FLAKEHOUSE_REPLICATION_HEARTBEAT_INTERVAL_S": "0.5",
    "FLAKEHOUSE_REPLICATION_RECONCILE_INTERVAL_S": "0.5",
    # Small, quick seals: repairs copy real sealed segments, not only replay Kafka.
    "FLAKEHOUSE_STORAGE_SEAL_ROWS": "2000",
    "FLAKEHOUSE_STORAGE_SEAL_AGE_S": "1",
}
STATUSES = ("passed", "failed", "skipped")


# --- continuous ingest ---------------------------------------------------------------------


@dataclass
class Ingest:
    """Uploads a small JSON-lines report every few hundred ms from a thread, and keeps the
    events acknowledged and the offsets written, so queries know what they must see."""

    client: Client
    total: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    _batch: int = 0

    def loop(self) -> None:
        while not self.stopped.is_set():
            if not self.running.wait(0.1):
                continue
            self.upload_one()
            time.sleep(0.2)

    def upload_one(self) -> None:
        self._batch += 1
        events = [
            {
                "timestamp": f"2026-11-{1 + self._batch % 20:02d}T10:00:{i % 60:02d}Z",
                "suite": f"suite-{i % 7}",
                "name": f"test_{self._batch}_{i}",
                "status": STATUSES[(self._batch + i) % 3],
                "duration": (i % 50) / 10,
            }
            for i in range(200)
        ]
        data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        try:
            result = self.client.upload(data, dataset="ci", filename=f"batch-{self._batch}.jsonl")
        except Exception as exc:
            self.errors.append(f"batch {self._batch}: {exc}")
            return
        with self.lock:
            self.total += len(events)
            for e in events:
                self.by_status[str(e["status"])] += 1
            self.offsets = offsets_of([result], self.offsets)

    def snapshot(self) -> tuple[int, dict[str, int], dict[str, dict[int, int]]]:
        with self.lock:
            return self.total, dict(self.by_status), {d: dict(o) for d, o in self.offsets.items()}


@dataclass
class Setup:
    cluster: RunningCluster
    client: Client
    ingest: Ingest
    checks: int = 0

    def check_answers(self) -> None:
        """count(*) by status, read-your-writes on everything acknowledged before the query:
        complete, and between what was acknowledged before and after it (uploads run on)."""
        _, low, offsets = self.ingest.snapshot()
        answer = self.client.query(
            "SELECT status, count(*) FROM ci GROUP BY status", after=offsets, timeout_ms=8000
        )
        _, high, _ = self.ingest.snapshot()
        assert not answer.partial, (
            f"partial answer at {time.strftime('%H:%M:%S')}: {answer.missing_partitions}\n"
            f"status: {json.dumps(self.status())}"
        )
        got = {str(row[0]): int(row[1] or 0) for row in answer.rows}
        assert set(got) <= set(STATUSES), got
        for s in STATUSES:
            assert low[s] <= got.get(s, 0) <= high[s], (got, low, high)
        self.checks += 1

    def status(self) -> dict[str, Any]:
        return status_dict(self.client.status())

    def wait(
        self,
        what: str,
        done: Callable[[dict[str, Any]], bool],
        timeout_s: float,
        check: bool = True,
    ) -> float:
        """Checks answers while waiting for the status to satisfy `done`; the seconds it took."""
        started = time.monotonic()
        while True:
            if check:
                self.check_answers()
            try:
                status = self.status()
            except grpc.RpcError:
                status = None
            if status is not None and done(status):
                return time.monotonic() - started
            assert time.monotonic() - started < timeout_s, f"{what}: {json.dumps(status)}"
            time.sleep(0.3)

    def storage(self, name: str) -> dict[str, Any]:
        return next(n for n in self.cluster.info()["storage"] if n["node_id"] == name)


def settled(nodes: set[str]) -> Callable[[dict[str, Any]], bool]:
    """Every partition on 2 online replicas, all on `nodes` (alive, each holding some), none
    draining or building."""

    def check(status: dict[str, Any]) -> bool:
        placed = layout(status)
        alive = {n["node_id"] for n in status["nodes"] if n["alive"]}
        return (
            len(placed) == PARTITIONS
            and all(
                len(p["replicas"]) == 2
                and all(r["state"] == "online" and r["node_id"] in nodes for r in p["replicas"])
                for p in status["partitions"]
            )
            # Every node has its share (with 3+ nodes and 32 replicas, some): a node that just
            # came back counts only once it took its partitions back.
            and all(any(n in held for held in placed.values()) for n in nodes)
            and nodes <= alive
        )

    return check


def layout(status: dict[str, Any]) -> dict[int, set[str]]:
    return {p["partition"]: {r["node_id"] for r in p["replicas"]} for p in status["partitions"]}


def moved(before: dict[int, set[str]], after: dict[int, set[str]]) -> list[str]:
    return [
        f"partition {p}: {sorted(before.get(p, set()))} -> {sorted(nodes)}"
        for p, nodes in sorted(after.items())
        if before.get(p) != nodes
    ]


def partition_counts(address: str) -> dict[int, int]:
    """count(*) per partition held (and online) on one storage node."""
    plan = plan_pb2.QueryPlan(
        ir_version=1,
        dataset="ci",
        aggregates=[plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)],
    )
    counts = {}
    with credentials.channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        for p in range(PARTITIONS):
            response = stub.ExecuteFragment(
                storage_pb2.ExecuteFragmentRequest(plan=plan, partitions=[p]), timeout=10
            )
            if not response.unavailable:
                counts[p] = int(response.result.group_columns.states[0].counts[0])
    return counts


def check_replicas_agree(setup: Setup, status: dict[str, Any]) -> None:
    """With ingest paused and applied everywhere: both replicas of every partition hold the
    same number of events, and together exactly what was acknowledged."""
    total, _, _ = setup.ingest.snapshot()
    counts = {n["node_id"]: partition_counts(n["address"]) for n in status["nodes"] if n["alive"]}
    per_partition = 0
    for p, nodes in layout(status).items():
        held = {counts[n].get(p) for n in nodes}
        assert len(held) == 1 and None not in held, f"partition {p}: {held} on {nodes}"
        per_partition += held.pop() or 0
    assert per_partition == total


def bootstrap_bytes(metrics_address: str) -> float:
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("flakehouse_storage_bootstrap_bytes_total "):
            return float(line.split()[1])
    return 0.0


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[replication] {text}", flush=True)


def same_answers(got: Any, want: Any) -> bool:
    """Equal, floats within 1e-12 relative."""
    if isinstance(got, float) and isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-12)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(map(same_answers, got, want))
    return bool(got == want)


def hold(cluster: RunningCluster, name: str) -> Path:
    path = cluster.data_dir / "hold" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("replication")
    data_dir = tmp / "cluster"
    (data_dir / "hold").mkdir(parents=True)
    (data_dir / "hold" / "storage-3").touch()  # the fourth node joins in the last test
    cluster = RunningCluster(data_dir, storage_nodes=4, partitions=PARTITIONS, env=ENV)
    client: Client | None = None
    try:
        cluster.wait_ready()
        client = Client.from_cluster_file(cluster.cluster_path, timeout_s=30)
        ingest = Ingest(client)
        ingest.upload_one()  # creates the dataset
        assert not ingest.errors, ingest.errors
        thread = threading.Thread(target=ingest.loop, daemon=True)
        thread.start()
        ingest.running.set()
        setup = Setup(cluster, client, ingest)
        # A new dataset's replicas start empty and come online: no answers checked until then.
        first = settled({"storage-0", "storage-1", "storage-2"})
        setup.wait("first placement", first, 60, check=False)
        yield setup
        ingest.stopped.set()
        thread.join(30)
        assert not ingest.errors, ingest.errors
    finally:
        if client is not None:
            client.close()
        cluster.stop()


def test_restarting_the_controller_moves_nothing(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    before = setup.status()
    victim = setup.cluster.info()["services"]["replication"]["pid"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        setup.check_answers()
        now = setup.cluster.info()["services"]["replication"]["pid"]
        if now != victim and pid_alive(now):
            try:
                after = setup.status()
                break
            except grpc.RpcError:
                pass
        assert time.monotonic() < deadline, "the controller did not come back"
        time.sleep(0.3)
    # Heartbeats arrive for a while; nothing may move meanwhile.
    for _ in range(10):
        setup.check_answers()
        after = setup.status()
        assert layout(after) == layout(before), moved(layout(before), layout(after))
        time.sleep(0.3)
    report(capsys, f"controller restart: moved {moved(layout(before), layout(after)) or 'nothing'}")


def test_a_killed_node_is_repaired_from_peers(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    before = setup.status()
    survivors = {"storage-0", "storage-2"}
    released = hold(setup.cluster, "storage-1")
    copied_before = sum(bootstrap_bytes(setup.storage(n)["metrics"]) for n in survivors)
    os.kill(setup.storage("storage-1")["pid"], signal.SIGKILL)
    repair_s = setup.wait("repair after the kill", settled(survivors), NODE_TIMEOUT_S + 60)
    after = setup.status()
    copied = sum(bootstrap_bytes(setup.storage(n)["metrics"]) for n in survivors) - copied_before
    report(
        capsys,
        f"kill storage-1: back to 2 online replicas in {repair_s:.1f}s "
        f"(node timeout {NODE_TIMEOUT_S}s), {copied / 1e6:.2f} MB copied from peers; moved:\n  "
        + "\n  ".join(moved(layout(before), layout(after))),
    )
    assert copied > 0, "repair did not copy segments from peers"
    setup.ingest.running.clear()
    time.sleep(0.5)
    setup.check_answers()
    check_replicas_agree(setup, after)
    # The node comes back and takes its share again.
    released.unlink()
    setup.ingest.running.set()
    setup.wait("storage-1 back", settled(survivors | {"storage-1"}), 60)


def test_a_wiped_node_bootstraps_from_peers(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.ingest.running.clear()
    time.sleep(0.5)
    setup.check_answers()
    before = setup.status()
    battery = [
        "SELECT status, count(*) FROM ci GROUP BY status",
        "SELECT suite, count(*), sum(duration), max(duration) FROM ci GROUP BY suite",
        "SELECT count(DISTINCT name) FROM ci",
        "SELECT name, duration FROM ci ORDER BY timestamp DESC, name LIMIT 20",
    ]
    answers = [setup.client.query(sql).rows for sql in battery]
    node = setup.storage("storage-2")
    released = hold(setup.cluster, "storage-2")
    os.kill(node["pid"], signal.SIGKILL)
    while pid_alive(node["pid"]):
        time.sleep(0.05)
    shutil.rmtree(node["data_dir"])
    started = time.monotonic()
    released.unlink()
    everyone = {"storage-0", "storage-1", "storage-2"}

    def rebuilt(status: dict[str, Any]) -> bool:
        if not (settled(everyone)(status) and layout(status) == layout(before)):
            return False
        # The restarted node answers for every partition it is given.
        mine = {p for p, nodes in layout(status).items() if "storage-2" in nodes}
        try:
            return set(partition_counts(setup.storage("storage-2")["grpc"])) == mine
        except grpc.RpcError:
            return False

    setup.wait("storage-2 rebuilt", rebuilt, 90)
    copied = bootstrap_bytes(setup.storage("storage-2")["metrics"])
    report(
        capsys,
        f"wipe storage-2: rebuilt in {time.monotonic() - started:.1f}s, "
        f"{copied / 1e6:.2f} MB copied from peers",
    )
    assert copied > 0, "the wiped node replayed Kafka instead of copying from peers"
    # Float sums may differ in the last bits: segment boundaries after the rebuild differ.
    assert same_answers([setup.client.query(sql).rows for sql in battery], answers)
    check_replicas_agree(setup, setup.status())
    setup.ingest.running.set()


def test_a_fourth_node_takes_its_share(setup: Setup, capsys: Capture) -> None:
    before = setup.status()
    started = time.monotonic()
    (setup.cluster.data_dir / "hold" / "storage-3").unlink()
    everyone = {"storage-0", "storage-1", "storage-2", "storage-3"}

    def joined(status: dict[str, Any]) -> bool:
        return settled(everyone)(status) and any(
            "storage-3" in nodes for nodes in layout(status).values()
        )

    setup.wait("storage-3 joined", joined, 90)
    after = setup.status()
    changes = moved(layout(before), layout(after))
    report(
        capsys,
        f"add storage-3: settled in {time.monotonic() - started:.1f}s; moved "
        f"{len(changes)} of {PARTITIONS} partitions:\n  " + "\n  ".join(changes),
    )
    # Exactly rendezvous hashing's layout for four nodes: a partition only gains the new node.
    four = [NodeInfo(n) for n in sorted(everyone)]
    want = {p: set(replicas_for(four, "flakehouse.ci", p, 2)) for p in range(PARTITIONS)}
    assert layout(after) == want
    for p, nodes in layout(after).items():
        assert nodes - before_nodes(before, p) <= {"storage-3"}, (p, nodes)
    setup.ingest.running.clear()
    time.sleep(0.5)
    setup.check_answers()
    check_replicas_agree(setup, after)
    assert setup.checks > 20


def before_nodes(status: dict[str, Any], partition: int) -> set[str]:
    return layout(status)[partition]
