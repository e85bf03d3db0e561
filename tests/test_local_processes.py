"""`flakehouse up` leaves no process behind: a killed ingest's forkserver and parse workers are
killed before it restarts, a clean stop stops every service's children too, and the same ports
can be used again at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from flakehouse.client.client import Client
from flakehouse.client.process_groups import members, running
from tests.localcluster import RunningCluster, pid_alive
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]

REPORT = b'<testsuite name="s"><testcase classname="c" name="a"/></testsuite>'


def service_pids(cluster: RunningCluster) -> list[int]:
    info = cluster.info()
    return [e["pid"] for e in info["services"].values()] + [n["pid"] for n in info["storage"]]


def test_killed_and_stopped_services_leave_no_process_behind(tmp_path: Path) -> None:
    cluster = RunningCluster(tmp_path / "cluster", storage_nodes=1, partitions=1)
    stopped = False
    try:
        cluster.wait_ready()
        with Client.from_cluster_file(cluster.cluster_path) as client:
            client.upload(REPORT, dataset="ci", filename="r.xml")  # starts the parse workers
        ingest = cluster.info()["services"]["ingest"]["pid"]
        helpers = [pid for pid in members(ingest) if pid != ingest]
        assert helpers, "ingest runs its parse workers in its own process group"

        os.kill(ingest, signal.SIGKILL)

        def restarted() -> bool:
            pid = cluster.info()["services"]["ingest"]["pid"]
            return pid != ingest and pid_alive(pid)

        eventually(restarted, "ingest restarted")
        assert not [pid for pid in helpers if running(pid)], "the killed ingest's children"
        assert "ingest: killed" in cluster.output.read_text()

        with Client.from_cluster_file(cluster.cluster_path) as client:
            client.upload(REPORT.replace(b'"a"', b'"b"'), dataset="ci", filename="r2.xml")
        groups = service_pids(cluster)
        assert any(len(members(pgid)) > 1 for pgid in groups)
        cluster.stop()
        stopped = True
        assert all(members(pgid) == [] for pgid in groups), "processes left after the stop"

        # Started again at once on the same ports (TIME-WAIT connections left on them do not
        # count as in use).
        again = RunningCluster(
            cluster.data_dir, storage_nodes=1, partitions=1, port_base=cluster.port_base
        )
        try:
            again.wait_ready()
        finally:
            again.stop()
    finally:
        if not stopped:
            cluster.stop()
