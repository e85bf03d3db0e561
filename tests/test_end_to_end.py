"""The whole path as processes: `flakehouse up`, real JUnit files in through the CLI, SQL answers
out, each compared with DuckDB over the same events (from `flakehouse junit2json`); then a storage
node killed with SIGKILL and restarted, and the same answers with nothing lost or doubled."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import grpc
import pytest

from tests.localcluster import RunningCluster, node_counts, pid_alive
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]

CORPUS = Path(__file__).resolve().parent / "corpus"
CORRUPT = CORPUS / "enricomi" / "pytest" / "corrupt-xml.xml"
FIRST = sorted(p for p in (CORPUS / "enricomi" / "pytest").glob("*.xml") if p != CORRUPT)
SECOND = [
    CORPUS / "enricomi" / "testsuite-in-testsuite.xml",
    CORPUS / "enricomi" / "testsuite-root.xml",
    CORPUS / "dorny" / "jest-junit.xml",
    CORPUS / "dorny" / "external" / "java" / "pulsar-test-report.xml",
]
PARTITIONS = 4

QUERIES = {
    "by status": (
        "SELECT status, count(*) FROM ci GROUP BY status",
        "SELECT status, count(*) FROM events GROUP BY status",
    ),
    "by suite": (
        "SELECT suite, count(*), sum(duration), min(duration), max(duration) "
        "FROM ci GROUP BY suite",
        "SELECT suite, count(*), sum(duration), min(duration), max(duration) "
        "FROM events GROUP BY suite",
    ),
    "avg of passed by class": (
        "SELECT classname, avg(duration), count(duration) FROM ci "
        "WHERE status = 'passed' GROUP BY classname",
        "SELECT classname, avg(duration), count(duration) FROM events "
        "WHERE status = 'passed' GROUP BY classname",
    ),
    "slow failures": (
        "SELECT count(*) FROM ci WHERE duration > 0.01 AND status != 'passed'",
        "SELECT count(*) FROM events WHERE duration > 0.01 AND status != 'passed'",
    ),
    "by label": (
        "SELECT branch, status, count(*) FROM ci GROUP BY branch, status",
        "SELECT branch, status, count(*) FROM events GROUP BY branch, status",
    ),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    running = RunningCluster(
        tmp_path_factory.mktemp("e2e") / "cluster", storage_nodes=2, partitions=PARTITIONS
    )
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def expected_events(tmp: Path, files: list[Path], branch: str) -> Path:
    """The events of `files` per `flakehouse junit2json`, with the label the upload adds."""
    out = subprocess.run(
        [sys.executable, "-m", "flakehouse.client.cli", "junit2json", *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp / f"events-{branch}.jsonl"
    lines = [line[:-1] + f', "branch": "{branch}"}}' for line in out.splitlines()]
    path.write_text("\n".join(lines) + "\n")
    return path


def oracle(jsonl: list[Path], sql: str) -> list[tuple[Any, ...]]:
    db = duckdb.connect()
    files = ", ".join(f"'{p}'" for p in jsonl)
    db.execute(
        f"CREATE TABLE events AS SELECT * FROM read_json([{files}], "
        "format='newline_delimited', union_by_name=true)"
    )
    return [tuple(row) for row in db.execute(sql).fetchall()]


def same_rows(got: list[list[Any]], want: list[tuple[Any, ...]]) -> bool:
    def key(row: Any) -> tuple[str, ...]:
        return tuple(repr(v) if isinstance(v, str) else "" for v in row)

    if len(got) != len(want):
        return False
    for g, w in zip(sorted(got, key=key), sorted(want, key=key), strict=True):
        for a, b in zip(g, w, strict=True):
            if isinstance(a, float) or isinstance(b, float):
                if a is None or b is None or not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif a != b:
                return False
    return True


def wait_for_answer(
    cluster: RunningCluster, sql: str, want: list[tuple[Any, ...]]
) -> dict[str, Any]:
    """Storage consumes asynchronously: poll until the answer matches, then return it."""

    def matches() -> dict[str, Any]:
        answer = cluster.query(sql)
        assert not answer["partial"] and same_rows(answer["rows"], want), answer
        return answer

    return eventually(matches, f"{sql}\nwant: {want}", 30)


def test_ingest_query_kill_restart(cluster: RunningCluster, tmp_path: Path) -> None:
    assert FIRST, f"corpus missing at {CORPUS}"
    ingest = cluster.cli("ingest", "--dataset", "ci", "--label", "branch=main", *map(str, FIRST))
    assert f"ingested {len(FIRST)} files" in ingest.stdout
    # A bad file is refused whole, with the file, the line and the reason; the exact counts
    # below show that nothing of it was written.
    rejected = cluster.cli("ingest", "--dataset", "ci", str(CORRUPT), check=False)
    assert rejected.returncode == 2
    assert f"{CORRUPT}:11: malformed XML" in rejected.stderr
    truth = [expected_events(tmp_path, FIRST, "main")]
    for name, (ours, theirs) in QUERIES.items():
        want = oracle(truth, theirs)
        assert want, name
        wait_for_answer(cluster, ours, want)

    # Re-sending the same files is an idempotent upload: no count changes.
    cluster.cli("ingest", "--dataset", "ci", "--label", "branch=main", *map(str, FIRST))
    by_status = QUERIES["by status"]
    wait_for_answer(cluster, by_status[0], oracle(truth, by_status[1]))

    victim = cluster.info()["storage"][1]
    os.kill(victim["pid"], signal.SIGKILL)
    # While it is down (and until the supervisor restarts it) answers stay complete: the
    # other replica serves every partition. New files arrive meanwhile.
    cluster.cli("ingest", "--dataset", "ci", "--label", "branch=release", *map(str, SECOND))
    truth.append(expected_events(tmp_path, SECOND, "release"))
    for ours, theirs in QUERIES.values():
        wait_for_answer(cluster, ours, oracle(truth, theirs))

    def restarted() -> bool:
        now = cluster.info()["storage"][1]
        return bool(now["pid"] != victim["pid"] and pid_alive(now["pid"]))

    eventually(restarted, "storage node restarted", 60)

    want_counts = {status: n for status, n in oracle(truth, by_status[1])}

    def every_node_holds_all() -> bool:
        counts = [node_counts(n["grpc"], "ci", PARTITIONS) for n in cluster.info()["storage"]]
        assert counts and all(c == want_counts for c in counts), f"nodes hold {counts}"
        return True

    eventually(
        every_node_holds_all,
        f"every node holds {want_counts}",
        60,
        retry_on=(grpc.RpcError, LookupError),
    )
    for ours, theirs in QUERIES.values():
        wait_for_answer(cluster, ours, oracle(truth, theirs))
