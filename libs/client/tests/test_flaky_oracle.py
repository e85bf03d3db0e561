"""`flakehouse flaky` against an independent computation: random events (tests, commits, jobs,
reruns, runner marks, nameless rows, branches, times), the command's own SQL answered by DuckDB
over them, and its report compared with tests/flaky_reference.py's, computed from the events."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import grpc
import pytest

from flakehouse.client import cli
from flakehouse.client.client import Cell, Client, QueryResult
from flakehouse.client.flaky import absent_fields, flaky_tests, queries
from flakehouse.client.tables import percent
from flakehouse.client.times import from_micros, rfc3339
from flakehouse.common.v1 import events_pb2
from flakehouse.core.errors import DeadlineExceeded, FlakehouseError, NotFound, Unavailable
from flakehouse.events.columns import to_value_column
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from libs.client.tests.fake_servers import serving
from tests.flaky_reference import Event, flaky_reference

MINUTE_US = 60_000_000
DAY_US = 24 * 60 * MINUTE_US
COLUMNS = {
    "ts": "BIGINT",
    "classname": "VARCHAR",
    "name": "VARCHAR",
    "status": "VARCHAR",
    "flaky": "BOOLEAN",
    "commit": "VARCHAR",
    "build": "VARCHAR",
    "job": "VARCHAR",
    "branch": "VARCHAR",
}
STYLES = ("commits", "jobs", "unlabelled", "mixed")


def generate(rng: random.Random, now_us: int, style: str) -> list[Event]:
    """Pipelines of one to three jobs; each job runs some tests, some of them more than once
    (reruns in the job), with per-test failure odds; a few nameless rows and skips."""
    # Failure odds per run; -1: fails on odd commits and builds only (flips, never a flake).
    tests = [
        (rng.choice(["com.a.Parser", "com.a.Store", None]), f"t{i}", rng.choice([0, 0.1, 0.4, -1]))
        for i in range(rng.randrange(4, 10))
    ]
    events: list[Event] = []
    for pipeline in range(rng.randrange(3, 14)):
        labelled = {"commits": 1.0, "jobs": 0.0, "unlabelled": 0.0, "mixed": 0.6}[style]
        commit = f"c{rng.randrange(8)}" if rng.random() < labelled else None
        build = f"b{pipeline}" if style != "unlabelled" and rng.random() < 0.8 else None
        branch = rng.choice(["main", "main", "feature", None])
        clock = now_us - rng.randrange(DAY_US // 4, 10 * DAY_US)
        # `now() - interval '7 days'` moves on while DuckDB runs: no run near that boundary.
        if abs(clock - (now_us - 7 * DAY_US)) < 60 * MINUTE_US:
            clock += 2 * 60 * MINUTE_US
        for _ in range(rng.choice([1, 1, 2, 3])):
            job = rng.choice(["unit", "unit", "it", None])  # a repeated name: a rerun of the job
            for classname, name, odds in rng.sample(tests, rng.randrange(1, len(tests) + 1)):
                for _ in range(rng.choice([1, 1, 1, 2, 3])):
                    clock += rng.randrange(1, 5) * MINUTE_US
                    r = rng.random()
                    fails = odds
                    if odds < 0:
                        fails = float(int((commit or build or "x0")[1:]) % 2)
                    status = (
                        "skipped"
                        if r < 0.05
                        else "error"
                        if r < 0.05 + fails / 4
                        else ("failed" if r < 0.05 + fails else "passed")
                    )
                    event: Event = {"timestamp": clock, "name": name, "status": status}
                    labels = {"classname": classname, "commit": commit, "build": build}
                    labels |= {"job": job, "branch": branch}
                    event |= {k: v for k, v in labels.items() if v is not None}
                    if rng.random() < 0.8:  # JSON sources may leave `flaky` out
                        event["flaky"] = status == "passed" and rng.random() < fails / 2
                    if rng.random() < 0.02:  # and may mark any run, which means nothing
                        event["flaky"] = True
                    if rng.random() < 0.03:  # the phantom's kind: no name
                        del event["name"]
                    events.append(event)
    return events


def duckdb_of(events: list[Event], path: Path) -> duckdb.DuckDBPyConnection:
    """The events as DuckDB's table `ci`, `timestamp` a TIMESTAMP as `now()` compares with."""
    with path.open("w") as out:
        for e in events:
            out.write(json.dumps({"ts": e["timestamp"], **e}) + "\n")
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
    db.execute(
        'CREATE TABLE ci AS SELECT make_timestamp(ts) AS "timestamp", * EXCLUDE (ts) '
        f"FROM read_json('{path}', format='newline_delimited', columns={spec})"
    )
    return db


def _micros(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value - datetime(1970, 1, 1)) // timedelta(microseconds=1)
    return value


def described(db: duckdb.DuckDBPyConnection, dataset: str) -> query_pb2.DescribeDatasetResponse:
    """DESCRIBE as the query service answers it: the fields some event carries (a column that
    is NULL in every row is a field no event has)."""
    columns = [row[0] for row in db.execute(f'DESCRIBE "{dataset}"').fetchall()]
    counts = db.execute(
        "SELECT " + ", ".join(f'count("{c}")' for c in columns) + f' FROM "{dataset}"'
    ).fetchone()
    assert counts is not None
    return query_pb2.DescribeDatasetResponse(
        dataset=dataset,
        fields=[
            events_pb2.FieldSummary(name=c, count=n)
            for c, n in zip(columns, counts, strict=True)
            if n
        ],
    )


class DuckDBClient:
    """Answers the client's `query` from DuckDB, times as int microseconds (raw_times), and its
    `describe`."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self.db = db
        self.sql: list[str] = []

    def describe(self, dataset: str) -> query_pb2.DescribeDatasetResponse:
        return described(self.db, dataset)

    def query(self, sql: str, *, timeout_ms: int = 0, raw_times: bool = False) -> QueryResult:
        assert raw_times
        self.sql.append(sql)
        cursor = self.db.execute(sql)
        columns = [d[0] for d in cursor.description]
        rows: list[list[Cell]] = [[_micros(v) for v in row] for row in cursor.fetchall()]
        return QueryResult(columns=columns, types=[], rows=rows, partial=False)


def reference_rows(events: list[Event], **options: Any) -> list[list[Any]]:
    rows = flaky_reference(events, **options)
    return [[*r[:-1], from_micros(r[-1])] for r in rows]


OPTIONS: list[dict[str, Any]] = [
    {},
    {"min_runs": 1},
    {"min_runs": 4, "limit": 3},
    {"since": "7d"},
    {"branch": "main", "min_runs": 1},
    {"branch": "feature", "since": "7d"},
]


def test_the_report_equals_the_reference_over_random_events(tmp_path: Path) -> None:
    seen: Counter[str] = Counter()
    for seed in range(48):
        rng = random.Random(seed)
        now_us = time.time_ns() // 1000
        style = STYLES[seed % len(STYLES)]
        events = generate(rng, now_us, style)
        client = DuckDBClient(duckdb_of(events, tmp_path / f"{seed}.jsonl"))
        for options in OPTIONS:
            since = options.get("since")
            branch = options.get("branch")
            min_runs = options.get("min_runs", 2)
            limit = options.get("limit")
            got = flaky_tests(
                cast(Client, client), "ci", since, limit, branch=branch, min_runs=min_runs
            )
            want = reference_rows(
                events,
                since_us=now_us - 7 * DAY_US if since else None,
                branch=branch,
                min_runs=min_runs,
                limit=limit,
            )
            assert got.rows == want, f"seed {seed} ({style}), {options}"
            assert not got.partial and got.missing_partitions == []
            seen.update(str(row[9]) for row in got.rows)
            seen["listed"] += len(got.rows)
            seen["rate strictly between 0 and 1"] += sum(0 < row[2] < 1 for row in got.rows)
            seen["listed by flips alone"] += sum(row[3] == 0 for row in got.rows)
        # The first options' queries, as the docs show them but for the labels no event has.
        absent = absent_fields(cast(Client, client), "ci")
        sent = [q for q in queries("ci", absent=absent) if q is not None]
        assert client.sql[: len(sent)] == sent
        seen["queries without a label"] += bool(absent)
        seen["nameless rows"] += sum("name" not in e for e in events)
    # The events reach every branch of the definitions: a comparison over empty reports, or
    # over one signal, would prove little.
    assert seen["listed"] > 300, seen
    assert min(seen[s] for s in ("commits", "jobs", "runs")) > 30, seen
    assert seen["rate strictly between 0 and 1"] > 200, seen
    assert seen["listed by flips alone"] > 10, seen
    assert seen["nameless rows"] > 50, seen
    assert seen["queries without a label"] > 5, seen


def test_a_partial_answer_says_so_with_every_missing_partition() -> None:
    class Partial:
        def __init__(self) -> None:
            self.calls = 0

        def describe(self, dataset: str) -> query_pb2.DescribeDatasetResponse:
            return query_pb2.DescribeDatasetResponse(dataset=dataset, partial=True)

        def query(self, sql: str, *, timeout_ms: int = 0, raw_times: bool = False) -> QueryResult:
            self.calls += 1
            missing = [{"dataset": "ci", "partition": p, "reason": "down"} for p in (self.calls, 2)]
            return QueryResult(
                columns=[], types=[], rows=[], partial=True, missing_partitions=missing
            )

    result = flaky_tests(cast(Client, Partial()), "ci", None, None)
    assert result.partial and [m["partition"] for m in result.missing_partitions] == [1, 2]


@pytest.mark.parametrize("error", [DeadlineExceeded, Unavailable])
def test_a_describe_that_fails_leaves_out_no_field(error: type[FlakehouseError]) -> None:
    """Every replica frozen: DESCRIBE times out, but the queries still give what they can (a
    partial answer, exit 3 from the command), instead of the report failing on it."""

    class Frozen:
        def __init__(self) -> None:
            self.sql: list[str] = []

        def describe(self, dataset: str) -> query_pb2.DescribeDatasetResponse:
            raise error("deadline exceeded")

        def query(self, sql: str, *, timeout_ms: int = 0, raw_times: bool = False) -> QueryResult:
            self.sql.append(sql)
            missing = [{"dataset": "ci", "partition": 0, "reason": "frozen"}]
            return QueryResult(
                columns=[], types=[], rows=[], partial=True, missing_partitions=missing
            )

    client = Frozen()
    assert absent_fields(cast(Client, client), "ci") == frozenset()
    result = flaky_tests(cast(Client, client), "ci", None, None)
    assert result.partial and result.missing_partitions[0]["reason"] == "frozen"
    assert client.sql == list(queries("ci"))  # both, with every optional field


def test_a_describe_refused_for_another_reason_still_fails() -> None:
    class Missing:
        def describe(self, dataset: str) -> query_pb2.DescribeDatasetResponse:
            raise NotFound(f"no dataset {dataset}")

    with pytest.raises(NotFound):
        flaky_tests(cast(Client, Missing()), "ci", None, None)


# --- the CLI, through a real gRPC server that answers from DuckDB -----------------------------


class DuckDBQuery(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self.db = db

    def DescribeDataset(self, request: Any, context: Any) -> query_pb2.DescribeDatasetResponse:
        return described(self.db.cursor(), request.dataset)

    def Query(self, request: Any, context: Any) -> query_pb2.QueryResponse:
        cursor = self.db.cursor().execute(request.sql)
        names = [d[0] for d in cursor.description]
        rows = [[_micros(v) for v in row] for row in cursor.fetchall()]
        return query_pb2.QueryResponse(
            columns=[query_pb2.ResultColumn(name=n) for n in names],
            column_values=[to_value_column([row[i] for row in rows]) for i in range(len(names))],
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[list[Event], str]]:
    rng, now_us = random.Random(2), time.time_ns() // 1000
    # Several worlds in one: the same test names in each, with and without commits.
    events = [e for style in STYLES for _ in range(2) for e in generate(rng, now_us, style)]
    duckdb = DuckDBQuery(duckdb_of(events, tmp_path / "events.jsonl"))
    with serving(duckdb, query_pb2_grpc.add_QueryServiceServicer_to_server) as address:
        yield events, address


def test_the_command_prints_the_report(
    world: tuple[list[Event], str], capsys: pytest.CaptureFixture[str]
) -> None:
    events, address = world
    command = ["flaky", "--query", address, "--dataset", "ci", "--since", "all"]
    assert cli.main([*command, "--branch", "main", "--min-runs", "1", "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    want = reference_rows(events, branch="main", min_runs=1)
    assert answer["rows"] == [[*r[:-1], rfc3339(r[-1])] for r in want]
    assert {r[9] for r in want} == {"commits", "jobs", "runs"}
    assert answer["columns"][:3] == ["classname", "name", "flake_rate"]

    assert cli.main([*command, "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "classname",
        "name",
        "flake_rate",
        "flaky_failures",
        "runs",
        "failed_runs",
        "marked_runs",
        "flaky_in",
        "ran_in",
        "signal",
        "flips",
        "last_seen",
    ]
    top = reference_rows(events, limit=2)
    assert [line.split()[-1] for line in lines[2:4]] == [rfc3339(r[-1]) for r in top]
    assert lines[-1] == "(2 rows)"
    # The flake rate is a percentage in the table (right-aligned under its header), the share
    # in JSON (above) and CSV.
    end = lines[0].index("flake_rate") + len("flake_rate")
    shown = [line[:end].rsplit(" ", 1)[-1] for line in lines[2:4]]
    assert shown == [percent(r[2]) for r in top] and all(s.endswith("%") for s in shown)

    assert cli.main([*command, "--format", "csv", "--min-runs", "3"]) == 0
    csv_lines = capsys.readouterr().out.splitlines()
    assert len(csv_lines) == 1 + len(reference_rows(events, min_runs=3))
    assert "%" not in "".join(csv_lines)


class Refusing(query_pb2_grpc.QueryServiceServicer):
    """A query service whose DESCRIBE times out and whose queries hold too many groups."""

    def DescribeDataset(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")

    def Query(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "the query holds more than 100000 groups (max_groups); narrow the query: a WHERE"
            " that keeps fewer rows, fewer GROUP BY keys or wider time buckets",
        )


def test_too_many_groups_says_how_to_narrow_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(Refusing(), query_pb2_grpc.add_QueryServiceServicer_to_server) as address:
        code = cli.main(["flaky", "--query", address, "--dataset", "ci"])
    assert code == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("error: the query holds more than 100000 groups (max_groups)")
    assert "(max_groups); the report groups the window's runs by test, commit" in err
    assert "narrow the query" not in err  # the service's advice is about SQL the user did not write
    assert err.count("\n") == 1  # one line
    assert "--since (e.g. --since 1d) or --branch, or raise the query service's MAX_GROUPS" in err


@pytest.mark.parametrize(
    ("option", "message"), [("--min-runs=0", "--min-runs"), ("--limit=-1", "--limit")]
)
def test_bad_options_are_refused(
    option: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["flaky", "--query", "127.0.0.1:1", "--dataset", "ci", option])
    assert code == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
