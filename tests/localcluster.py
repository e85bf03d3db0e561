"""Runs `flakehouse up` as a real process tree for end-to-end tests, on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flakehouse.client.cluster import CA_FILE_ENV, TOKEN_ENV
from flakehouse.client.local import LocalCluster
from flakehouse.common.v1 import plan_pb2
from flakehouse.core.net import port_is_free
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc
from tests import credentials

HOST = "127.0.0.1"


def free_port_base(storage_nodes: int) -> int:
    """A base whose whole range (broker, services, storage nodes, metrics ports) is free."""
    probe = LocalCluster(Path("/nonexistent"), storage_nodes=storage_nodes, say=lambda _: None)
    offsets = [
        p - probe.port_base
        for s in probe.processes
        for p in (s.spec.port, s.spec.metrics_port)
        if p
    ]
    # Below the kernel's ephemeral range: the cluster's own outgoing connections (the broker's to
    # its object store above all) take ports there, and one took a port `up` was about to bind.
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    span = max(offsets) + 1
    for _ in range(50):
        base = random.randrange(20000, ephemeral_start - span, 10)
        if all(port_is_free(HOST, base + offset) for offset in offsets):
            return base
    raise RuntimeError("no free port range")


class RunningCluster:
    def __init__(
        self,
        data_dir: Path,
        storage_nodes: int = 2,
        partitions: int = 4,
        env: dict[str, str] | None = None,
        port_base: int | None = None,
        ephemeral: bool = False,
        session_secrets: bool = True,
    ) -> None:
        """session_secrets: the cluster's certificates come from the test session's CA and it
        takes the session's tokens, as every test channel and client does (tests/
        credentials.py); False lets `flakehouse up` make its own, and the CLI run by cli() then
        finds them through the cluster file alone."""
        self._session_secrets = session_secrets
        self.data_dir = data_dir
        self.cluster_path = data_dir / "cluster.json"
        self.output = data_dir.parent / "up.out"
        self.port_base = port_base or free_port_base(storage_nodes)
        self._out = self.output.open("wb")
        if session_secrets:
            credentials.seed_local_cluster(data_dir)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flakehouse.client.cli",
                "up",
                "--data-dir",
                str(data_dir),
                "--port-base",
                str(self.port_base),
                "--storage-nodes",
                str(storage_nodes),
                "--partitions",
                str(partitions),
                *(["--ephemeral"] if ephemeral else []),
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"flakehouse up exited:\n{self.output.read_text()}")
            if "ready" in self.output.read_text():
                return
            time.sleep(0.2)
        raise TimeoutError(f"cluster not ready in {timeout_s}s:\n{self.output.read_text()}")

    def info(self) -> dict[str, Any]:
        return dict(json.loads(self.cluster_path.read_text()))

    def cli(
        self, *args: str, check: bool = True, token: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs the flakehouse CLI against this cluster (as `token`, when given)."""
        command = [sys.executable, "-m", "flakehouse.client.cli", *args]
        if args and args[0] in ("ingest", "query"):
            command[4:4] = ["--cluster", str(self.cluster_path)]
        env = dict(os.environ)
        if not self._session_secrets:
            env.pop(TOKEN_ENV, None)
            env.pop(CA_FILE_ENV, None)
        if token is not None:
            env[TOKEN_ENV] = token
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"{args[:2]} failed ({result.returncode}):\n{result.stderr}")
        return result

    def query(self, sql: str) -> dict[str, Any]:
        return self.query_json(sql)

    def query_json(self, sql: str, *options: str) -> dict[str, Any]:
        """`flakehouse query --format json --allow-partial [options] SQL`, parsed: callers look
        at `partial` themselves."""
        result = self.cli("query", "--format", "json", "--allow-partial", *options, sql)
        return dict(json.loads(result.stdout))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it (Linux /proc), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def kill_everything(cluster: RunningCluster) -> int:
    """A power cut, as far as processes go: every process of the cluster (`up`, the broker, the
    object store, every service and their children) is stopped first, so none reacts to the
    others' death, then SIGKILLed. Returns how many there were."""
    tree = process_tree(cluster.process.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.process.wait(10)
    return len(tree)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def node_counts(address: str, dataset: str, partitions: int) -> dict[str, int]:
    """count(*) by status straight from one storage node over the given partitions; raises if
    the node does not hold (or has not caught up with) all of them."""
    plan = plan_pb2.QueryPlan(
        ir_version=1,
        dataset=dataset,
        group_by=[plan_pb2.GroupKey(field="status")],
        aggregates=[plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)],
    )
    with credentials.channel(address) as channel:
        response = storage_pb2_grpc.StorageServiceStub(channel).ExecuteFragment(
            storage_pb2.ExecuteFragmentRequest(plan=plan, partitions=list(range(partitions))),
            timeout=10,
        )
    if response.unavailable:
        raise LookupError(f"{address}: {list(response.unavailable)}")
    groups = response.result.group_columns
    # strict: every status is a string.
    return dict(zip(groups.keys[0].string_values, groups.states[0].counts, strict=True))
