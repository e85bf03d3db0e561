"""Query answers against an independent oracle, through the whole pipeline, on two local
clusters that start once for the module.

The events, their DuckDB copy and the comparison are in tests/oracle_world.py; the battery of
SQL cases, ours and DuckDB's, in tests/oracle_cases.py (and tests/oracle_mixed.py).
`flakehouse ingest` sends the events to `flakehouse up` (2 storage nodes, 4 partitions); each
case through `flakehouse query --format json` must equal DuckDB's answer over the same events.

`flakehouse flaky` must list the planted flaky tests, and its whole report must equal an
independent computation of its definitions over the events (tests/flaky_reference.py), with
and without a window, a branch and a minimum of runs, and over the same events sent without
commit labels.

Then, on the same cluster (through `Client.query`, which runs the battery in about a second):

- one storage node killed with SIGKILL (`flakehouse up` restarts it after ~1 s): the battery
  runs at once and again until the restarted node has caught up, and every answer must be
  complete and equal to DuckDB's (the other replica answers the dead or catching-up one's
  partitions);
- both replicas of every partition down. `flakehouse up` restarts a killed process within
  ~1 s and a restarted node declines queries only until it has caught up, so SIGKILL cannot
  hold the state still long enough to observe it reliably. Both storage processes are frozen
  with SIGSTOP instead (connections stay open and calls hang, as with a hung or partitioned
  node, which is the harder case for the query service: nothing fails fast, only the deadline
  ends the wait), for less than the controller's node timeout, then resumed with SIGCONT. The
  answers must say `partial: true` and name every partition (dataset, partition, reason).

A second cluster with 3 storage nodes and 8 partitions holds the same events, uploaded so that
each upload's partition is known; two of its nodes are frozen together. With 3 nodes some
partitions still have a live replica: the answer must be partial, name exactly the partitions
whose replicas are all frozen, and equal DuckDB over the events of the other partitions.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import grpc
import pytest

from flakehouse.client import Client
from flakehouse.common.v1 import events_pb2
from flakehouse.events.signature import add_signature
from flakehouse.events.timestamps import format_timestamp
from flakehouse.events.values import from_value
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc
from tests import credentials
from tests.localcluster import RunningCluster, node_counts, pid_alive
from tests.oracle_cases import battery, cases_with_marks
from tests.oracle_world import (
    DAY_US,
    DST_ZONES,
    FLAKY_DAYS,
    SEED,
    Case,
    Row,
    World,
    describe,
    dst_changes,
    duckdb_table,
    expected,
    flaky_oracle,
    generate,
    mismatch,
    upload_files,
    without_commits,
    write_jsonl,
)

pytestmark = [pytest.mark.processes, pytest.mark.broker]

PARTITIONS = 4


# --- the clusters ----------------------------------------------------------------------------


@dataclass
class Setup:
    world: World
    db: duckdb.DuckDBPyConnection
    cluster: RunningCluster
    wide: RunningCluster  # 3 storage nodes, 8 partitions
    tmp: Path
    wants: dict[str, list[Row]] = field(default_factory=dict)


def wait_queryable(client: Client, total: int, timeout_s: float = 60, dataset: str = "ci") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.query(f"SELECT count(*) FROM {dataset}")
        if not answer.partial and answer.rows == [[total]]:
            return
        assert time.monotonic() < deadline, f"not all queryable: {answer.rows}, want {total}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("oracle")
    # Both clusters start at once: most of their start-up is waiting.
    # RunningCluster writes its output next to its data directory: one parent each.
    (tmp / "two").mkdir()
    (tmp / "three").mkdir()
    cluster = RunningCluster(tmp / "two" / "cluster", storage_nodes=2, partitions=PARTITIONS)
    wide = RunningCluster(tmp / "three" / "cluster", storage_nodes=3, partitions=8)
    try:
        world = generate(SEED, time.time_ns() // 1000)
        db = duckdb_table(world.events, tmp / "duckdb.jsonl")
        files = upload_files(world, tmp / "uploads", 12)
        cluster.wait_ready()
        wide.wait_ready()

        ingest = cluster.cli("ingest", "--dataset", "ci", *map(str, files))
        assert f"ingested {len(files)} files, {len(world.events)} events" in ingest.stdout
        # The wide cluster takes one upload per job, through the client, to learn each job's
        # partition (an upload lands in one partition).
        with Client.from_cluster_file(wide.cluster_path) as client:

            def send(i: int) -> tuple[int, list[int]]:
                data = b"".join(
                    json.dumps(dict(e, timestamp=format_timestamp(int(e["timestamp"])))).encode()
                    + b"\n"
                    for e in world.jobs[i]
                )
                result = client.upload(data, dataset="ci", filename=f"job-{i}.jsonl")
                return i, list(result.offsets)

            with ThreadPoolExecutor(4) as pool:
                for i, partitions in pool.map(send, range(len(world.jobs))):
                    assert len(partitions) == 1, partitions
                    world.partition_of_job[i] = partitions[0]
            wait_queryable(client, len(world.events))
        with Client.from_cluster_file(cluster.cluster_path) as client:
            wait_queryable(client, len(world.events))
        yield Setup(world, db, cluster, wide, tmp)
    finally:
        cluster.stop()
        wide.stop()


def test_generated_events_cover_what_the_battery_needs(setup: Setup) -> None:
    events = setup.world.events
    statuses = Counter(e["status"] for e in events)
    assert len(events) > 10_000
    assert all(0.005 < statuses[s] / len(events) < 0.06 for s in ("failed", "error", "skipped"))
    builds = Counter(type(e["build"]).__name__ for e in events if "build" in e)
    assert builds["int"] > 1000 and builds["str"] > 1000
    assert {setup.world.twin_build, str(setup.world.twin_build)} <= {e.get("build") for e in events}
    assert len({e["run_id"] for e in events}) == len(events) > 4096
    days = {int(e["timestamp"]) // DAY_US for e in events}
    assert len(days) >= 9
    assert len(setup.world.partition_of_job) == len(setup.world.jobs)
    assert len(set(setup.world.partition_of_job.values())) >= 4
    # Days of 23 and 25 hours, in both zones the cases bucket by.
    for zone in DST_ZONES:
        for change in dst_changes(zone, setup.world.now_us):
            near = [e for e in events if abs(int(e["timestamp"]) - change) < 3_600_000_000]
            assert len(near) >= 4, (zone, change)
    assert battery(setup.world), "no cases"


@pytest.mark.parametrize("name", cases_with_marks())
def test_query_matches_duckdb(setup: Setup, name: str) -> None:
    case = next(c for c in battery(setup.world) if c.name == name)
    want = expected(setup.db, case)
    assert bool(want) != case.empty, f"{case.name}: DuckDB answers {want}"
    answer = ask_zoned(setup.cluster, case) if case.zone else setup.cluster.query(case.ours)
    setup.wants[name] = want
    assert not answer["partial"], describe(case, answer, want, "partial answer")
    assert answer["missing_partitions"] == []
    why = mismatch(case, answer["rows"], want)
    assert why is None, describe(case, answer, want, why or "")


# --- flakehouse flaky ------------------------------------------------------------------------


def test_flaky_command_lists_the_planted_tests(setup: Setup) -> None:
    world = setup.world
    command = ["flaky", "--cluster", str(setup.cluster.cluster_path), "--dataset", "ci"]
    month = ["--since", "30d", "--limit", "0", "--format", "json"]
    answer = json.loads(setup.cluster.cli(*command, *month).stdout)
    assert answer["partial"] is False
    rows = answer["rows"]
    assert rows == flaky_oracle(world.events)
    # Only the planted tests fail where the same commit also passed, or carry marks; the others
    # fail on whole commits now and then, and are listed for their flips alone.
    assert {(r[0], r[1]) for r in rows if r[3] > 0} == world.mixed | world.marked
    assert all(r[7] > 0 for r in rows if (r[0], r[1]) in world.mixed)
    assert all(r[6] > 0 for r in rows if (r[0], r[1]) in world.marked)
    assert any(r[3] == 0 and r[10] >= 2 for r in rows)
    assert {r[9] for r in rows} == {"commits"}

    top = setup.cluster.cli(*command, "--since", "30d", "--limit", "2").stdout
    lines = top.splitlines()
    header = (
        "classname name flake_rate flaky_failures runs failed_runs marked_runs flaky_in ran_in "
        "signal flips last_seen"
    )
    assert lines[0].split() == header.split()
    assert lines[-1] == "(2 rows)"
    assert [line.split()[:2] for line in lines[2:4]] == [r[:2] for r in rows[:2]]

    # The default window, 7 days, drops the older runs: the oracle over the same window agrees.
    week = world.now_us - FLAKY_DAYS * DAY_US
    recent = [e for e in world.events if int(e["timestamp"]) >= week]
    assert len(recent) < len(world.events)
    default = json.loads(setup.cluster.cli(*command, "--format", "json").stdout)
    assert default["rows"] == flaky_oracle(world.events, since_us=week, limit=50)
    assert default["rows"] != rows

    for options, want in [
        (["--branch", "main"], flaky_oracle(world.events, branch="main")),
        (["--min-runs", "95"], flaky_oracle(world.events, min_runs=95)),
    ]:
        narrower = json.loads(setup.cluster.cli(*command, *month, *options).stdout)
        assert narrower["rows"] == want, options
        assert 0 < len(want) < len(rows), options


def test_flaky_command_without_commit_labels(setup: Setup) -> None:
    events = without_commits(setup.world)
    path = write_jsonl(setup.tmp / "without-commits.jsonl", events)
    cluster = setup.cluster
    cluster.cli("ingest", "--dataset", "nocommit", str(path))
    with Client.from_cluster_file(cluster.cluster_path) as client:
        wait_queryable(client, len(events), dataset="nocommit")
    command = ["flaky", "--cluster", str(cluster.cluster_path), "--dataset", "nocommit"]
    answer = json.loads(cluster.cli(*command, "--since", "30d", "--format", "json").stdout)
    rows = answer["rows"]
    assert rows == flaky_oracle(events, limit=50)
    # The mixed tests failed and passed again in one job; the marked ones, in no job, show by
    # their marks alone.
    signals = {(r[0], r[1]): r[9] for r in rows if r[3] > 0}
    assert signals == {t: "jobs" for t in setup.world.mixed} | {
        t: "runs" for t in setup.world.marked
    }


def ask_zoned(cluster: RunningCluster, case: Case) -> dict[str, Any]:
    """Our answer to a case in a time zone (QueryRequest.time_zone), as `query --format json`
    gives one: times as instants, in UTC. The client does not send a zone yet."""
    address = cluster.info()["services"]["query"]["grpc"]
    with credentials.channel(address) as channel:
        request = query_pb2.QueryRequest(sql=case.ours, time_zone=case.zone)
        response = query_pb2_grpc.QueryServiceStub(channel).Query(request, timeout=60)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    times = [c.type == events_pb2.VALUE_TYPE_TIMESTAMP for c in response.columns]
    rows = [
        [
            epoch + timedelta(microseconds=v) if time and isinstance(v, int) else v
            for time, v in zip(times, map(from_value, row.values), strict=True)
        ]
        for row in response.rows
    ]
    missing = [
        {"dataset": m.dataset, "partition": m.partition, "reason": m.reason}
        for m in response.missing_partitions
    ]
    return {"rows": rows, "partial": response.partial, "missing_partitions": missing}


# --- failures --------------------------------------------------------------------------------


def run_battery(client: Client, setup: Setup, cases: list[Case]) -> list[str]:
    """Every case once through the client; the descriptions of the answers that were wrong."""
    problems = []
    for case in cases:
        want = setup.wants.get(case.name) or expected(setup.db, case)
        if case.zone:
            answer = ask_zoned(setup.cluster, case)
            if answer["partial"]:
                problems.append(describe(case, answer, want, "partial answer"))
                continue
            why = mismatch(case, answer["rows"], want)
            if why:
                problems.append(describe(case, answer, want, why))
            continue
        result = client.query(case.ours)
        answer = result.to_json_dict()
        if result.partial:
            problems.append(describe(case, answer, want, "partial answer"))
            continue
        why = mismatch(case, result.rows, want)
        if why:
            problems.append(describe(case, answer, want, why))
    return problems


def test_answers_stay_complete_while_a_storage_node_is_killed(setup: Setup) -> None:
    cluster = setup.cluster
    cases = [c for c in battery(setup.world) if not c.bug]
    victim = cluster.info()["storage"][1]
    with Client.from_cluster_file(cluster.cluster_path) as client:
        os.kill(victim["pid"], signal.SIGKILL)
        rounds = 0
        caught_up = False
        deadline = time.monotonic() + 60
        # Dead, then restarted and catching up, then caught up: one more round after that.
        while True:
            problems = run_battery(client, setup, cases)
            rounds += 1
            assert not problems, f"round {rounds} after the kill:\n" + "\n".join(problems)
            if caught_up:
                break
            now = cluster.info()["storage"][1]
            if now["pid"] != victim["pid"] and pid_alive(now["pid"]):
                try:
                    counts = node_counts(now["grpc"], "ci", PARTITIONS)
                except (grpc.RpcError, LookupError):
                    counts = {}
                caught_up = sum(counts.values()) == len(setup.world.events)
            assert time.monotonic() < deadline, "the killed node did not come back and catch up"
    assert rounds >= 2


def _freeze(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)


def _thaw(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


def wait_complete(client: Client, total: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        answer = client.query("SELECT count(*) FROM ci")
        if not answer.partial and answer.rows == [[total]]:
            return
        assert time.monotonic() < deadline, f"no complete answer after thawing: {answer}"
        time.sleep(0.3)


def test_answers_are_partial_when_every_replica_is_frozen(setup: Setup) -> None:
    cluster = setup.cluster
    pids = [n["pid"] for n in cluster.info()["storage"]]
    with Client.from_cluster_file(cluster.cluster_path, timeout_s=30) as client:
        wait_complete(client, len(setup.world.events))
        _freeze(pids)
        try:
            started = time.monotonic()
            by_status = client.query(
                "SELECT status, count(*) FROM ci GROUP BY status", timeout_ms=1500
            )
            total = client.query("SELECT count(*) FROM ci", timeout_ms=1500)
            elapsed = time.monotonic() - started
            # `flakehouse flaky` asks for a server deadline under its own, so the partial
            # answer reaches it (unlike `flakehouse query`, below).
            args = ["--dataset", "ci", "--timeout", "2", "--format", "json"]
            flaky = cluster.cli("flaky", "--cluster", str(cluster.cluster_path), *args, check=False)
        finally:
            _thaw(pids)
        for answer in (by_status, total):
            assert answer.partial is True
            assert [(m["dataset"], m["partition"]) for m in answer.missing_partitions] == [
                ("ci", p) for p in range(PARTITIONS)
            ]
            assert all(m["reason"] for m in answer.missing_partitions)
        assert by_status.rows == []  # no partition answered: no groups
        assert total.rows == [[0]]  # an aggregate without GROUP BY: one row, even over nothing
        assert elapsed < 10, "the deadline did not bound the wait"
        assert flaky.returncode == 3, flaky.stderr  # partial: printed, and exit 3
        flaky_answer = json.loads(flaky.stdout)
        assert flaky_answer["partial"] is True and flaky_answer["rows"] == []
        assert [m["partition"] for m in flaky_answer["missing_partitions"]] == [0, 1, 2, 3]
        wait_complete(client, len(setup.world.events))


def test_cli_prints_the_partial_answer_when_every_replica_is_frozen(setup: Setup) -> None:
    cluster = setup.cluster
    pids = [n["pid"] for n in cluster.info()["storage"]]
    with Client.from_cluster_file(cluster.cluster_path) as client:
        wait_complete(client, len(setup.world.events))
        _freeze(pids)
        try:
            sql = "SELECT count(*) FROM ci"
            result = cluster.cli("query", "--timeout", "2", "--format", "json", sql, check=False)
        finally:
            _thaw(pids)
        wait_complete(client, len(setup.world.events))
    # Printed, and exit 3: a script does not take it for the whole answer.
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"error: partial answer: {PARTITIONS} partitions missing")
    answer = json.loads(result.stdout)
    assert answer["partial"] is True
    assert [m["partition"] for m in answer["missing_partitions"]] == list(range(PARTITIONS))


def test_partial_answer_is_exactly_the_partitions_that_answered(setup: Setup) -> None:
    """3 nodes, 8 partitions: freeze the two nodes that alone hold some partitions."""
    wide, world = setup.wide, setup.world
    nodes = {n["node_id"]: n for n in wide.info()["storage"]}
    with credentials.channel(wide.info()["services"]["replication"]["grpc"]) as channel:
        placement = (
            replication_pb2_grpc.ReplicationServiceStub(channel)
            .GetPlacement(replication_pb2.GetPlacementRequest(dataset="ci"), timeout=10)
            .placement
        )
    [dataset] = [d for d in placement.datasets if d.dataset == "ci"]
    replicas = {p.partition: set(p.replicas) for p in dataset.partitions}
    # The pair of nodes that alone holds the most partitions while a third node holds others.
    pairs = Counter(frozenset(r) for r in replicas.values() if len(r) == 2)
    frozen = max(pairs, key=lambda pair: (pairs[pair], sorted(pair)))
    lost = sorted(p for p, r in replicas.items() if r <= frozen)
    assert 0 < len(lost) < len(replicas), replicas
    kept_jobs = [i for i, p in world.partition_of_job.items() if p not in lost]
    kept = [e for i in kept_jobs for e in world.jobs[i]]
    assert 0 < len(kept) < len(world.events)
    db = duckdb_table(kept, setup.tmp / "kept.jsonl")
    names = {
        "group by status, default order",
        "float aggregates by suite",
        "count distinct by suite",
        "mixed field: typed group keys, numbers < strings < null",
        "raw rows ORDER BY float DESC LIMIT",
    }
    cases = [c for c in battery(world) if c.name in names]
    assert len(cases) == 5
    pids = [nodes[n]["pid"] for n in sorted(frozen)]
    with Client.from_cluster_file(wide.cluster_path, timeout_s=30) as client:
        wait_complete(client, len(world.events))
        _freeze(pids)
        try:
            answers = [client.query(c.ours, timeout_ms=1200) for c in cases]
        finally:
            _thaw(pids)
        problems = []
        for case, result in zip(cases, answers, strict=True):
            answer = result.to_json_dict()
            want = expected(db, case)
            if not result.partial or [m["partition"] for m in result.missing_partitions] != lost:
                problems.append(describe(case, answer, want, f"want partial, missing {lost}"))
                continue
            if any(m["dataset"] != "ci" or not m["reason"] for m in result.missing_partitions):
                problems.append(describe(case, answer, want, "missing partition without reason"))
            why = mismatch(case, result.rows, want)
            if why:
                problems.append(
                    describe(case, answer, want, "not the answered partitions' data: " + why)
                )
        assert not problems, "\n".join(problems)
        wait_complete(client, len(world.events))


# --- DESCRIBE and EXPLAIN --------------------------------------------------------------------

_JSON_TYPES = {str: "string", int: "int", float: "float", bool: "bool"}


def test_describe_lists_every_field_with_its_types_and_counts(setup: Setup) -> None:
    # As ingest stores them: an event with a message gets its signature.
    events = [dict(e) for e in setup.world.events]
    for event in events:
        add_signature(event)
    counts = Counter(
        (name, "int" if name == "timestamp" else _JSON_TYPES[type(value)])
        for e in events
        for name, value in e.items()
        if value is not None
    )
    answer = setup.cluster.query("DESCRIBE ci")
    assert answer["columns"] == ["field", "type", "events", "share"]
    assert answer["partial"] is False
    got = {(field, kind): (n, share) for field, kind, n, share in answer["rows"]}
    assert {key: n for key, (n, _) in got.items()} == dict(counts)
    assert got[("timestamp", "int")] == (len(events), 1.0)
    build_ints = counts[("build", "int")]
    assert got[("build", "int")][1] == pytest.approx(build_ints / len(events))
    # A field seen with two types is listed once per type.
    assert ("build", "string") in got


def test_explain_shows_the_plan_and_the_replicas_it_would_ask(setup: Setup) -> None:
    cluster = setup.cluster
    sql = (
        "EXPLAIN SELECT suite, count(*) AS runs FROM ci WHERE status = 'failed'"
        " GROUP BY suite ORDER BY runs DESC LIMIT 5"
    )
    answer = cluster.query(sql)
    assert answer["columns"] == ["plan"]
    lines = [row[0] for row in answer["rows"]]
    assert "dataset: ci" in lines
    assert "filter: status = 'failed'" in lines
    assert "group by: suite" in lines
    assert "after merge, limit: 5" in lines
    node_ids = {n["node_id"] for n in cluster.info()["storage"]}
    partition_lines = [line for line in lines if line.startswith("partition ")]
    assert len(partition_lines) == PARTITIONS
    for line in partition_lines:
        asked = line.split("ask ", 1)[1].split(", then ")
        # The first replica says how far behind it is: idle, up to date.
        assert asked[0].endswith(" (up to date)"), line
        assert {a.removesuffix(" (up to date)") for a in asked} == node_ids, line
    # Nothing ran: EXPLAIN scans no rows.
    cli = cluster.cli("query", "--format", "table", sql)
    assert "partition 0: ask " in cli.stdout


def test_errors_point_into_explain_and_describe(setup: Setup) -> None:
    cluster = setup.cluster
    bad = cluster.cli("query", "EXPLAIN SELECT nosuch(x) FROM ci", check=False)
    assert bad.returncode == 2
    # The position is that of the original statement, EXPLAIN included.
    assert "unknown function nosuch(); scalar functions: lower, upper" in bad.stderr
    assert "(line 1, column 16)" in bad.stderr
    unknown = cluster.cli("query", "DESCRIBE nowhere", check=False)
    assert unknown.returncode == 2 and "unknown dataset 'nowhere'" in unknown.stderr


def test_errors_for_a_field_no_event_has_and_null_for_one_absent_from_the_rows(
    setup: Setup,
) -> None:
    cluster = setup.cluster
    typo = cluster.cli("query", "SELECT count(*) FROM ci WHERE statuz = 'failed'", check=False)
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr == (
        "error: unknown field statuz: no event in ci has it; did you mean status?"
        " (line 1, column 31)\n"
    )
    grouped = cluster.cli(
        "query", "EXPLAIN SELECT statuz, count(*) FROM ci GROUP BY statuz", check=False
    )
    assert grouped.returncode == 2
    assert "unknown field statuz: no event in ci has it; did you mean status?" in grouped.stderr
    assert grouped.stderr.endswith("(line 1, column 16)\n")  # EXPLAIN included
    # `message` is on failed and skipped events only: over passed ones it is NULL, as it was.
    passed = [e for e in setup.world.events if e.get("status") == "passed"]
    assert not any(e.get("message") is not None for e in passed)
    answer = cluster.query(
        "SELECT count(message), count(*) FROM ci WHERE status = 'passed' AND message IS NULL"
    )
    assert answer["rows"] == [[0, len(passed)]] and answer["partial"] is False
