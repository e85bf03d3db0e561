"""Query answers against an independent oracle, through the whole pipeline.

A seeded generator writes JSON-lines events (so the events stored are exactly ours): suites,
classnames and names, a few % failures/errors/skips, lognormal durations, sparse int `retries`,
bool `flaky`, sparse `prop.os`/`prop.browser`, a `build` that is an int in some events and a
string in others, ten days of timestamps, `branch` and `commit`, and tests planted as flaky.
`flakehouse ingest` sends them to `flakehouse up` (2 storage nodes, 4 partitions); a battery of
queries through `flakehouse query --format json` is compared with DuckDB over the same events.
DuckDB needs one type per column, so `build` is two columns there, `build_int` and `build_str`,
and each DuckDB query spells out the documented coercion (numbers compare with numbers only, a
string never becomes a number, groups and distinct values are keyed by type and value).

`flakehouse flaky` must list exactly the planted flaky tests, with the counts that an
independent computation of its definitions over the events gives.

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
import math
import os
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import grpc
import pytest

from flakehouse.client import Client
from flakehouse.events.timestamps import format_timestamp
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc
from tests.localcluster import RunningCluster, node_counts, pid_alive

pytestmark = [pytest.mark.processes, pytest.mark.broker]

Scalar = str | int | float | bool
Event = dict[str, Scalar]
TestKey = tuple[str, str]

SEED = 20261122
PARTITIONS = 4
MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
RELATIVE_DAYS = 3
FLAKY_DAYS = 7
SUITES = ["api", "core", "db", "ui", "cli", "net"]
CLASSES = ["Auth", "Parser", "Store", "Render"]
WORDS = ["login", "logout", "query", "insert", "render", "parse", "retry", "cache", "sync", "load"]
BRANCHES = ["main"] * 6 + ["release/1.x"] * 2 + ["feature/login", "feature/search"]
OSES = ["linux", "windows", "macos"]
BROWSERS = ["chrome", "firefox", "webkit"]
DUCKDB_COLUMNS = {
    "timestamp": "BIGINT",
    "suite": "VARCHAR",
    "classname": "VARCHAR",
    "name": "VARCHAR",
    "status": "VARCHAR",
    "duration": "DOUBLE",
    "message": "VARCHAR",
    "retries": "BIGINT",
    "flaky": "BOOLEAN",
    "line": "BIGINT",
    "hostname": "VARCHAR",
    "branch": "VARCHAR",
    "commit": "VARCHAR",
    "run_id": "VARCHAR",
    "prop.os": "VARCHAR",
    "prop.browser": "VARCHAR",
    "build_int": "BIGINT",
    "build_str": "VARCHAR",
}


# --- the events ------------------------------------------------------------------------------


@dataclass
class World:
    events: list[Event]
    jobs: list[list[Event]]  # one CI job's events each; a job is uploaded whole
    mixed: set[TestKey]  # planted: passed and failed on the same commit
    marked: set[TestKey]  # planted: flaky = true / passed after retries
    now_us: int
    twin_build: int  # a build number present both as an int and as a string
    partition_of_job: dict[int, int] = field(default_factory=dict)  # 3-node cluster only


def generate(seed: int, now_us: int) -> World:
    rng = random.Random(seed)
    tests: list[tuple[str, str, str, float]] = []
    for suite in SUITES:
        for cls in CLASSES:
            classname = f"com.acme.{suite}.{cls}Test"
            for i in range(rng.randrange(8, 14)):
                tests.append(
                    (suite, classname, f"test_{rng.choice(WORDS)}_{i}", rng.uniform(-4, 1))
                )
    planted = rng.sample(tests, 5)
    mixed = {(t[1], t[2]) for t in planted[:3]}
    marked = {(t[1], t[2]) for t in planted[3:]}

    commits: list[tuple[str | None, str | None, int]] = [
        (
            f"{rng.getrandbits(40):010x}",
            rng.choice(BRANCHES),
            now_us - rng.randrange(3 * HOUR_US, 10 * DAY_US),
        )
        for _ in range(48)
    ]
    # Runs nobody labelled: no commit, no branch. They can never make a mixed commit.
    commits.append((None, None, now_us - rng.randrange(3 * HOUR_US, 10 * DAY_US)))

    jobs: list[list[Event]] = []
    used: set[int] = set()
    # No event within minutes of `now() - 3 days` (relative-time query) and `now() - 7 days`
    # (`flakehouse flaky`'s default window): `now()` moves on while the test runs, and no event
    # may cross a boundary in that time.
    gaps = [
        (now_us - days * DAY_US - 2 * MINUTE_US, now_us - days * DAY_US + 30 * MINUTE_US)
        for days in (RELATIVE_DAYS, FLAKY_DAYS)
    ]

    def unique(ts: int) -> int:
        for lo, hi in gaps:
            if lo <= ts <= hi:
                ts -= hi - lo + MINUTE_US
        while ts in used:
            ts += 1
        used.add(ts)
        return ts

    for c, (sha, branch, started) in enumerate(commits):
        chosen = rng.sample(tests, len(tests) // 2)
        chosen += [t for t in planted if t not in chosen]
        statuses = {}
        for t in chosen:
            r = rng.random()
            statuses[t] = (
                "failed"
                if r < 0.03
                else "error"
                if r < 0.04
                else "skipped"
                if r < 0.07
                else "passed"
            )
        flaky_commit = {t for t in chosen if (t[1], t[2]) in mixed and sha and rng.random() < 0.35}
        for j in range(rng.choice([1, 1, 2, 2, 3])):
            job: list[Event] = []
            clock = started + j * rng.randrange(1, 40) * MINUTE_US
            os_ = rng.choice(OSES) if rng.random() < 0.7 else None
            browser = rng.choice(BROWSERS) if rng.random() < 0.5 else None
            r = rng.random()
            build: Scalar | None = (
                rng.randrange(100, 140)
                if r < 0.4
                else str(rng.randrange(100, 140))
                if r < 0.55
                else f"b{rng.randrange(100, 140)}"
                if r < 0.75
                else None
            )
            if c < 2 and j == 0:
                build = 123 if c == 0 else "123"
            host = f"ci-{rng.randrange(8)}"
            for t in chosen:
                suite, classname, name, mu = t
                runs = [statuses[t]]
                if t in flaky_commit and j == 0:
                    runs = ["failed", "passed"]  # failed, then passed when run again
                for status in runs:
                    event: Event = {
                        "timestamp": unique(clock),
                        "suite": suite,
                        "classname": classname,
                        "name": name,
                        "status": status,
                        "hostname": host,
                        "line": 10 + len(name) * 3,
                        "run_id": f"{sha}-{j}-{len(job)}",
                    }
                    if sha is not None and branch is not None:
                        event["commit"], event["branch"] = sha, branch
                    if status != "skipped":
                        event["duration"] = round(rng.lognormvariate(mu, 0.8), 6)
                        clock += int(event["duration"] * 1_000_000)
                    clock += rng.randrange(1_000, 200_000)
                    if rng.random() < 0.75:
                        event["flaky"] = False
                    if rng.random() < 0.4:
                        event["retries"] = 0
                    if status in ("failed", "error"):
                        event["message"] = f"AssertionError: {name} expected {rng.randrange(9)}"
                        event["retries"] = rng.randrange(3)  # retried, failed every time
                    elif status == "skipped":
                        event["message"] = "skipped: not on this platform"
                    elif (classname, name) in marked and rng.random() < 0.4:
                        event["flaky"], event["retries"] = True, rng.randrange(1, 3)
                    if os_ is not None:
                        event["prop.os"] = os_
                    if browser is not None and suite == "ui":
                        event["prop.browser"] = browser
                    if build is not None:
                        event["build"] = build
                    job.append(event)
            jobs.append(job)
    events = [e for job in jobs for e in job]
    return World(events, jobs, mixed, marked, now_us, twin_build=123)


def write_jsonl(path: Path, events: Sequence[Event]) -> Path:
    with path.open("w") as out:
        for event in events:
            row = dict(event, timestamp=format_timestamp(int(event["timestamp"])))
            out.write(json.dumps(row) + "\n")
    return path


def upload_files(world: World, directory: Path, files: int) -> list[Path]:
    """The jobs spread over `files` JSON-lines files (an upload lands in one partition)."""
    directory.mkdir()
    groups: list[list[Event]] = [[] for _ in range(files)]
    for i, job in enumerate(world.jobs):
        groups[i % files].extend(job)
    return [write_jsonl(directory / f"events-{i:02d}.jsonl", g) for i, g in enumerate(groups)]


def duckdb_table(events: Sequence[Event], path: Path) -> duckdb.DuckDBPyConnection:
    """The events as a DuckDB table `events`; `build` split by type into build_int/build_str."""
    with path.open("w") as out:
        for event in events:
            row = {k: v for k, v in event.items() if k != "build"}
            build = event.get("build")
            row["build_int" if isinstance(build, int) else "build_str"] = build
            out.write(json.dumps(row) + "\n")
    db = duckdb.connect()
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in DUCKDB_COLUMNS.items()) + "}"
    db.execute(
        f"CREATE TABLE events AS SELECT * FROM read_json('{path}', "
        f"format='newline_delimited', columns={columns})"
    )
    return db


# --- the battery -----------------------------------------------------------------------------

Row = Sequence[Any]


@dataclass(frozen=True)
class Case:
    name: str
    ours: str
    theirs: str
    ordered: bool = False  # compare in order (ORDER BY, or the documented default order)
    # Columns answered by sketches: "distinct" (exact up to 4096, else within 2 %) or
    # "quantile" (within 1 % of quantile_cont).
    sketch: dict[int, str] = field(default_factory=dict)
    post: Callable[[Row], Row] | None = None  # DuckDB row -> our row's shape
    bug: str | None = None  # a known bug: the case is expected to fail (strict xfail)
    empty: bool = False  # DuckDB's answer has no rows, on purpose


def _coalesce(*indexes: int | tuple[int, int]) -> Callable[[Row], Row]:
    """A DuckDB row to ours, where (i, j) merges the int column i and the string column j of
    one mixed field into one value, as our engine answers it."""

    def post(row: Row) -> Row:
        out = []
        for i in indexes:
            if isinstance(i, tuple):
                out.append(row[i[0]] if row[i[0]] is not None else row[i[1]])
            else:
                out.append(row[i])
        return tuple(out)

    return post


def battery(world: World) -> list[Case]:
    """The queries, ours and DuckDB's, for the world's events."""
    now_us, twin_build = world.now_us, world.twin_build
    times = sorted(int(e["timestamp"]) for e in world.events) or [0]
    # Bounds equal to stored timestamps: `>` and `<=` must be exact to the microsecond.
    t_lo, t_hi = times[len(times) // 3], times[2 * len(times) // 3]
    cut = now_us - RELATIVE_DAYS * DAY_US
    day = datetime.fromtimestamp(now_us // 1_000_000, UTC).date()
    first, last = day - timedelta(days=6), day - timedelta(days=4)
    first_us = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) * 10**6
    last_us = int(datetime(last.year, last.month, last.day, 12, tzinfo=UTC).timestamp()) * 10**6
    v = twin_build
    return [
        Case("count(*)", "SELECT count(*) FROM ci", "SELECT count(*) FROM events"),
        Case(
            "count(field) on sparse fields",
            'SELECT count(duration), count("prop.os"), count("prop.browser"), count(retries), '
            'count(flaky), count("commit"), count(1) FROM ci',
            'SELECT count(duration), count("prop.os"), count("prop.browser"), count(retries), '
            'count(flaky), count("commit"), count(1) FROM events',
        ),
        Case(
            "group by status, default order",
            "SELECT status, count(*) FROM ci GROUP BY status",
            "SELECT status, count(*) FROM events GROUP BY status ORDER BY status",
            ordered=True,
        ),
        Case(
            "float aggregates by suite",
            "SELECT suite, count(*), sum(duration), avg(duration), min(duration), max(duration) "
            "FROM ci GROUP BY suite",
            "SELECT suite, count(*), sum(duration), avg(duration), min(duration), max(duration) "
            "FROM events GROUP BY suite",
        ),
        Case(
            "int aggregates",
            "SELECT sum(retries), avg(retries), min(retries), max(retries) FROM ci",
            "SELECT sum(retries), avg(retries), min(retries), max(retries) FROM events",
        ),
        Case(
            "count distinct, small (exact)",
            'SELECT count(DISTINCT name), count(DISTINCT classname), count(DISTINCT "commit"), '
            "count(DISTINCT flaky) FROM ci",
            'SELECT count(DISTINCT name), count(DISTINCT classname), count(DISTINCT "commit"), '
            "count(DISTINCT flaky) FROM events",
        ),
        Case(
            "count distinct by suite",
            "SELECT suite, count(DISTINCT name), count(DISTINCT hostname) FROM ci GROUP BY suite",
            "SELECT suite, count(DISTINCT name), count(DISTINCT hostname) FROM events "
            "GROUP BY suite",
        ),
        Case(
            "count distinct, HyperLogLog",
            "SELECT count(DISTINCT run_id) FROM ci",
            "SELECT count(DISTINCT run_id) FROM events",
            sketch={0: "distinct"},
        ),
        Case(
            "count distinct by branch, both regimes",
            "SELECT branch, count(DISTINCT run_id), count(*) FROM ci GROUP BY branch",
            "SELECT branch, count(DISTINCT run_id), count(*) FROM events GROUP BY branch",
            sketch={1: "distinct"},
        ),
        Case(
            "percentiles",
            "SELECT p50(duration), p90(duration), p95(duration), p99(duration), "
            "percentile(duration, 0.25) FROM ci",
            "SELECT quantile_cont(duration, 0.5), quantile_cont(duration, 0.9), "
            "quantile_cont(duration, 0.95), quantile_cont(duration, 0.99), "
            "quantile_cont(duration, 0.25) FROM events",
            sketch={0: "quantile", 1: "quantile", 2: "quantile", 3: "quantile", 4: "quantile"},
        ),
        Case(
            "percentiles by suite with a filter",
            "SELECT suite, p95(duration), percentile(duration, 0.75), count(*) FROM ci "
            "WHERE status = 'passed' GROUP BY suite",
            "SELECT suite, quantile_cont(duration, 0.95), quantile_cont(duration, 0.75), "
            "count(*) FROM events WHERE status = 'passed' GROUP BY suite",
            sketch={1: "quantile", 2: "quantile"},
        ),
        Case(
            "percentile of an int field",
            "SELECT p50(retries), p99(retries) FROM ci WHERE retries > 0",
            "SELECT quantile_cont(retries, 0.5), quantile_cont(retries, 0.99) FROM events "
            "WHERE retries > 0",
            sketch={0: "quantile", 1: "quantile"},
        ),
        Case(
            "time_bucket 1d, default order",
            "SELECT time_bucket(timestamp, '1d') AS day, count(*), avg(duration) FROM ci "
            "GROUP BY day",
            "SELECT timestamp - timestamp % 86400000000 AS day, count(*), avg(duration) "
            "FROM events GROUP BY day ORDER BY day",
            ordered=True,
        ),
        Case(
            "time_bucket 6h, DuckDB argument order, with status",
            "SELECT time_bucket(interval '6 hours', timestamp) AS b, status, count(*) FROM ci "
            "WHERE status != 'passed' GROUP BY b, status",
            "SELECT timestamp - timestamp % 21600000000 AS b, status, count(*) FROM events "
            "WHERE status != 'passed' GROUP BY b, status",
        ),
        Case(
            "string =",
            "SELECT classname, count(*) FROM ci WHERE status = 'failed' GROUP BY classname",
            "SELECT classname, count(*) FROM events WHERE status = 'failed' GROUP BY classname",
        ),
        Case(
            "string != on a sparse field",
            "SELECT branch, count(*) FROM ci WHERE branch != 'main' GROUP BY branch",
            "SELECT branch, count(*) FROM events WHERE branch != 'main' GROUP BY branch",
        ),
        Case(
            "IN",
            "SELECT branch, status, count(*) FROM ci WHERE branch IN ('main', 'release/1.x') "
            "GROUP BY branch, status",
            "SELECT branch, status, count(*) FROM events WHERE branch IN ('main', 'release/1.x') "
            "GROUP BY branch, status",
        ),
        Case(
            "NOT IN",
            "SELECT suite, count(*) FROM ci WHERE status NOT IN ('passed', 'skipped') "
            "GROUP BY suite",
            "SELECT suite, count(*) FROM events WHERE status NOT IN ('passed', 'skipped') "
            "GROUP BY suite",
        ),
        Case(
            "LIKE prefix",
            "SELECT name, count(*) FROM ci WHERE name LIKE 'test_login%' GROUP BY name",
            "SELECT name, count(*) FROM events WHERE name LIKE 'test_login%' GROUP BY name",
        ),
        Case(
            "NOT LIKE and _",
            "SELECT count(*) FROM ci WHERE classname NOT LIKE '%.ui.%' AND name LIKE 'test_load__'",
            "SELECT count(*) FROM events WHERE classname NOT LIKE '%.ui.%' "
            "AND name LIKE 'test_load__'",
        ),
        Case(
            "int >=",
            "SELECT status, count(*) FROM ci WHERE retries >= 1 GROUP BY status",
            "SELECT status, count(*) FROM events WHERE retries >= 1 GROUP BY status",
        ),
        Case(
            "int against float literals",
            "SELECT count(*) FROM ci WHERE retries = 0.0 OR retries > 1.5",
            "SELECT count(*) FROM events WHERE retries = 0.0 OR retries > 1.5",
        ),
        Case(
            "float range",
            "SELECT suite, count(*) FROM ci WHERE duration > 2.5 AND duration <= 10 GROUP BY suite",
            "SELECT suite, count(*) FROM events WHERE duration > 2.5 AND duration <= 10 "
            "GROUP BY suite",
        ),
        Case(
            "BETWEEN",
            "SELECT count(*), sum(duration) FROM ci WHERE duration BETWEEN 0.1 AND 0.2",
            "SELECT count(*), sum(duration) FROM events WHERE duration BETWEEN 0.1 AND 0.2",
        ),
        Case(
            "bare bool",
            "SELECT count(*) FROM ci WHERE flaky",
            "SELECT count(*) FROM events WHERE flaky",
        ),
        Case(
            "bool = FALSE",
            "SELECT count(*) FROM ci WHERE flaky = FALSE",
            "SELECT count(*) FROM events WHERE flaky = FALSE",
        ),
        Case(
            "NOT bool (absent is unknown)",
            "SELECT count(*) FROM ci WHERE NOT flaky",
            "SELECT count(*) FROM events WHERE NOT flaky",
        ),
        Case(
            "group by bool, default order",
            "SELECT flaky, count(*) FROM ci GROUP BY flaky",
            "SELECT flaky, count(*) FROM events GROUP BY flaky ORDER BY flaky NULLS LAST",
            ordered=True,
        ),
        Case(
            "IS NULL on a sparse field",
            'SELECT suite, count(*) FROM ci WHERE "prop.os" IS NULL GROUP BY suite',
            'SELECT suite, count(*) FROM events WHERE "prop.os" IS NULL GROUP BY suite',
        ),
        Case(
            "IS NOT NULL on a sparse field",
            'SELECT "prop.browser", count(*) FROM ci WHERE "prop.browser" IS NOT NULL '
            'GROUP BY "prop.browser"',
            'SELECT "prop.browser", count(*) FROM events WHERE "prop.browser" IS NOT NULL '
            'GROUP BY "prop.browser"',
        ),
        Case(
            "AND / OR / NOT",
            "SELECT count(*) FROM ci WHERE (status = 'failed' OR status = 'error') "
            "AND NOT (branch = 'main')",
            "SELECT count(*) FROM events WHERE (status = 'failed' OR status = 'error') "
            "AND NOT (branch = 'main')",
        ),
        Case(
            "NOT over OR of sparse fields (three-valued logic)",
            "SELECT count(*) FROM ci WHERE NOT (\"prop.os\" = 'linux' OR retries > 0)",
            "SELECT count(*) FROM events WHERE NOT (\"prop.os\" = 'linux' OR retries > 0)",
        ),
        Case(
            "dotted fields unquoted, null group keys, default order",
            "SELECT prop.os, prop.browser, count(*) FROM ci GROUP BY prop.os, prop.browser",
            'SELECT "prop.os", "prop.browser", count(*) FROM events '
            'GROUP BY "prop.os", "prop.browser" ORDER BY "prop.os", "prop.browser"',
            ordered=True,
        ),
        Case(
            "relative time",
            f"SELECT status, count(*) FROM ci WHERE timestamp >= now() - interval "
            f"'{RELATIVE_DAYS} days' GROUP BY status",
            f"SELECT status, count(*) FROM events WHERE timestamp >= {cut} GROUP BY status",
        ),
        Case(
            "absolute time range",
            f"SELECT count(*), count(DISTINCT \"commit\") FROM ci WHERE timestamp >= '{first}' "
            f"AND timestamp < '{last}T12:00:00Z'",
            f'SELECT count(*), count(DISTINCT "commit") FROM events WHERE timestamp >= '
            f"{first_us} AND timestamp < {last_us}",
        ),
        Case(
            "HAVING",
            "SELECT classname, count(*) AS fails FROM ci WHERE status IN ('failed', 'error') "
            "GROUP BY classname HAVING count(*) >= 5",
            "SELECT classname, count(*) AS fails FROM events WHERE status IN ('failed', 'error') "
            "GROUP BY classname HAVING count(*) >= 5",
        ),
        Case(
            "ORDER BY count DESC LIMIT (ties by key)",
            "SELECT name, count(*) AS runs FROM ci GROUP BY name ORDER BY runs DESC LIMIT 7",
            "SELECT name, count(*) AS runs FROM events GROUP BY name "
            "ORDER BY runs DESC, name LIMIT 7",
            ordered=True,
        ),
        Case(
            "HAVING on an unselected aggregate, ORDER BY avg LIMIT",
            "SELECT classname, name, avg(duration) AS mean FROM ci GROUP BY classname, name "
            "HAVING count(duration) > 40 ORDER BY mean DESC LIMIT 10",
            "SELECT classname, name, avg(duration) AS mean FROM events GROUP BY classname, name "
            "HAVING count(duration) > 40 ORDER BY mean DESC LIMIT 10",
            ordered=True,
        ),
        Case(
            "expressions over aggregates",
            "SELECT suite, sum(duration) / count(*) AS per_run, max(duration) - min(duration) "
            "AS spread FROM ci GROUP BY suite ORDER BY spread DESC",
            "SELECT suite, sum(duration) / count(*) AS per_run, max(duration) - min(duration) "
            "AS spread FROM events GROUP BY suite ORDER BY spread DESC",
            ordered=True,
        ),
        Case(
            "GROUP BY position and alias",
            "SELECT status AS s, branch, count(*) FROM ci GROUP BY 1, branch",
            "SELECT status AS s, branch, count(*) FROM events GROUP BY 1, branch",
        ),
        Case(
            "raw rows ORDER BY float DESC LIMIT",
            "SELECT name, duration FROM ci ORDER BY duration DESC LIMIT 10",
            "SELECT name, duration FROM events ORDER BY duration DESC LIMIT 10",
            ordered=True,
        ),
        Case(
            "raw rows filtered, ORDER BY timestamp DESC",
            "SELECT timestamp, classname, name, status FROM ci WHERE status = 'error' "
            "ORDER BY timestamp DESC LIMIT 25",
            "SELECT timestamp, classname, name, status FROM events WHERE status = 'error' "
            "ORDER BY timestamp DESC LIMIT 25",
            ordered=True,
        ),
        Case(
            "raw rows LIMIT OFFSET on a dotted field",
            "SELECT timestamp, name, prop.os FROM ci WHERE prop.os = 'macos' "
            "ORDER BY timestamp LIMIT 10 OFFSET 5",
            'SELECT timestamp, name, "prop.os" FROM events WHERE "prop.os" = \'macos\' '
            "ORDER BY timestamp LIMIT 10 OFFSET 5",
            ordered=True,
        ),
        Case(
            "aggregates over no rows",
            "SELECT count(*), sum(duration), min(name), count(DISTINCT name), p50(duration) "
            "FROM ci WHERE status = 'nope'",
            "SELECT count(*), sum(duration), min(name), count(DISTINCT name), "
            "quantile_cont(duration, 0.5) FROM events WHERE status = 'nope'",
        ),
        Case(
            "GROUP BY over no rows",
            "SELECT status, count(*) FROM ci WHERE duration < 0 GROUP BY status",
            "SELECT status, count(*) FROM events WHERE duration < 0 GROUP BY status",
            empty=True,
        ),
        Case(
            "min/max of strings and bools",
            "SELECT min(name), max(classname), min(flaky), max(flaky) FROM ci",
            "SELECT min(name), max(classname), min(flaky), max(flaky) FROM events",
        ),
        Case(
            "ORDER BY an unselected aggregate, LIMIT OFFSET",
            "SELECT classname FROM ci GROUP BY classname ORDER BY max(duration) DESC "
            "LIMIT 5 OFFSET 2",
            "SELECT classname FROM events GROUP BY classname ORDER BY max(duration) DESC, "
            "classname LIMIT 5 OFFSET 2",
            ordered=True,
        ),
        Case(
            "ORDER BY key ASC, count DESC, ties by keys, OFFSET",
            "SELECT status, branch, count(*) AS n FROM ci GROUP BY status, branch "
            "ORDER BY status, n DESC LIMIT 6 OFFSET 2",
            "SELECT status, branch, count(*) AS n FROM events GROUP BY status, branch "
            "ORDER BY status, n DESC, branch LIMIT 6 OFFSET 2",
            ordered=True,
        ),
        Case(
            "HAVING on count distinct",
            "SELECT suite, count(*) FROM ci GROUP BY suite HAVING count(DISTINCT name) > 34",
            "SELECT suite, count(*) FROM events GROUP BY suite HAVING count(DISTINCT name) > 34",
        ),
        Case(
            "time_bucket 1h, ORDER BY bucket DESC LIMIT",
            "SELECT time_bucket(timestamp, '1h') AS h, count(*) AS n FROM ci "
            "WHERE status = 'failed' GROUP BY h ORDER BY h DESC LIMIT 5",
            "SELECT timestamp - timestamp % 3600000000 AS h, count(*) AS n FROM events "
            "WHERE status = 'failed' GROUP BY h ORDER BY h DESC LIMIT 5",
            ordered=True,
        ),
        Case(
            "timestamp > and <= an exact stored value",
            f"SELECT count(*), min(timestamp), max(timestamp) FROM ci "
            f"WHERE timestamp > {t_lo} AND timestamp <= {t_hi}",
            f"SELECT count(*), min(timestamp), max(timestamp) FROM events "
            f"WHERE timestamp > {t_lo} AND timestamp <= {t_hi}",
        ),
        Case(
            "timestamp BETWEEN dates",
            f"SELECT branch, count(*) FROM ci WHERE timestamp BETWEEN '{first}' AND '{last}' "
            "GROUP BY branch",
            f"SELECT branch, count(*) FROM events WHERE timestamp BETWEEN {first_us} AND "
            f"{last_us - 12 * HOUR_US} GROUP BY branch",
        ),
        Case(
            "NOT BETWEEN",
            "SELECT count(*) FROM ci WHERE duration NOT BETWEEN 0.05 AND 5",
            "SELECT count(*) FROM events WHERE duration NOT BETWEEN 0.05 AND 5",
        ),
        Case(
            "NOT LIKE on a sparse field",
            "SELECT count(*) FROM ci WHERE \"prop.browser\" NOT LIKE 'c%'",
            "SELECT count(*) FROM events WHERE \"prop.browser\" NOT LIKE 'c%'",
        ),
        Case(
            "LIKE with literal dots and a middle %",
            "SELECT classname, count(*) FROM ci WHERE classname LIKE 'com.acme.%.Auth%' "
            "GROUP BY classname",
            "SELECT classname, count(*) FROM events WHERE classname LIKE 'com.acme.%.Auth%' "
            "GROUP BY classname",
        ),
        Case(
            "bool !=",
            "SELECT count(*) FROM ci WHERE flaky != TRUE",
            "SELECT count(*) FROM events WHERE flaky != TRUE",
        ),
        Case(
            "quoted dataset and table alias",
            "SELECT c.status, count(*) FROM \"ci\" AS c WHERE c.suite = 'db' GROUP BY c.status",
            "SELECT c.status, count(*) FROM events AS c WHERE c.suite = 'db' GROUP BY c.status",
        ),
        Case(
            "count distinct of ints, HyperLogLog and exact",
            "SELECT count(DISTINCT timestamp), count(DISTINCT line) FROM ci",
            "SELECT count(DISTINCT timestamp), count(DISTINCT line) FROM events",
            sketch={0: "distinct", 1: "distinct"},
        ),
        Case(
            "int sum and avg by group",
            "SELECT suite, sum(line), avg(line), max(line) FROM ci GROUP BY suite",
            "SELECT suite, sum(line), avg(line), max(line) FROM events GROUP BY suite",
        ),
        Case(
            "mixed field: IN with literals of both types",
            f"SELECT count(*) FROM ci WHERE build IN ({v}, '{v}', 'b125')",
            f"SELECT count(*) FROM events WHERE build_int IN ({v}) OR build_str IN ('{v}', 'b125')",
        ),
        Case(
            "raw ORDER BY a sparse field DESC: nulls last",
            "SELECT timestamp, \"prop.browser\" FROM ci WHERE suite = 'ui' "
            "AND name LIKE 'test_l%' ORDER BY \"prop.browser\" DESC, timestamp LIMIT 3000",
            "SELECT timestamp, \"prop.browser\" FROM events WHERE suite = 'ui' "
            "AND name LIKE 'test_l%' ORDER BY \"prop.browser\" DESC NULLS LAST, timestamp",
            ordered=True,
        ),
        Case(
            "raw ORDER BY unselected bool and float fields",
            "SELECT name, status FROM ci WHERE retries >= 2 ORDER BY flaky DESC, duration DESC "
            "LIMIT 50",
            "SELECT name, status FROM events WHERE retries >= 2 "
            "ORDER BY flaky DESC NULLS LAST, duration DESC NULLS LAST LIMIT 50",
            ordered=True,
        ),
        Case(
            "thousands of groups",
            'SELECT classname, name, "commit", count(*), max(duration) FROM ci '
            'GROUP BY classname, name, "commit"',
            'SELECT classname, name, "commit", count(*), max(duration) FROM events '
            'GROUP BY classname, name, "commit"',
        ),
        Case(
            "percentiles of hundreds of small groups",
            "SELECT classname, name, p95(duration), p50(duration) FROM ci GROUP BY classname, name",
            "SELECT classname, name, quantile_cont(duration, 0.95), "
            "quantile_cont(duration, 0.5) FROM events GROUP BY classname, name",
            sketch={2: "quantile", 3: "quantile"},
        ),
        Case(
            "percentile(f, 1) is the maximum",
            "SELECT percentile(duration, 1), max(duration) FROM ci",
            "SELECT quantile_cont(duration, 1.0), max(duration) FROM events",
            sketch={0: "quantile"},
        ),
        Case(
            "mixed field: count distinct by group, typed",
            "SELECT status, count(DISTINCT build) FROM ci GROUP BY status",
            "SELECT status, count(DISTINCT build_int) + count(DISTINCT build_str) FROM events "
            "GROUP BY status",
        ),
        Case(
            "mixed field: avg and sum ignore strings",
            "SELECT branch, avg(build), sum(build), count(build) FROM ci GROUP BY branch",
            "SELECT branch, avg(build_int), sum(build_int), count(build_int) + count(build_str) "
            "FROM events GROUP BY branch",
        ),
        Case(
            "mixed field: HAVING compares numbers with numbers only",
            'SELECT "commit", min(build) AS m FROM ci GROUP BY "commit" HAVING min(build) > 105',
            'SELECT "commit", min(build_int) AS m FROM events GROUP BY "commit" '
            "HAVING min(build_int) > 105",
        ),
        Case(
            "mixed field: ORDER BY a mixed aggregate DESC",
            'SELECT "commit", min(build) AS m FROM ci GROUP BY "commit" ORDER BY m DESC LIMIT 40',
            'SELECT "commit", min(build_int), min(build_str) FROM events GROUP BY "commit" '
            # The string minimum counts only where the group has no int.
            "ORDER BY min(build_int) IS NULL, min(build_int) DESC, "
            "CASE WHEN min(build_int) IS NULL THEN min(build_str) END DESC NULLS LAST, "
            '"commit" NULLS LAST LIMIT 40',
            ordered=True,
            post=_coalesce(0, (1, 2)),
        ),
        Case(
            "mixed field: int = matches ints only",
            f"SELECT count(*) FROM ci WHERE build = {v}",
            f"SELECT count(*) FROM events WHERE build_int = {v}",
        ),
        Case(
            "mixed field: string = matches strings only",
            f"SELECT count(*) FROM ci WHERE build = '{v}'",
            f"SELECT count(*) FROM events WHERE build_str = '{v}'",
        ),
        Case(
            "mixed field: range on numbers, range on strings",
            "SELECT count(*) FROM ci WHERE build > 120 OR build >= 'b130'",
            "SELECT count(*) FROM events WHERE build_int > 120 OR build_str >= 'b130'",
        ),
        Case(
            "mixed field: NOT IN is true for the other type",
            "SELECT count(*) FROM ci WHERE build NOT IN (110, 120, 130)",
            "SELECT count(*) FROM events WHERE build_str IS NOT NULL "
            "OR build_int NOT IN (110, 120, 130)",
        ),
        Case(
            "mixed field: IS NULL means no value of any type",
            "SELECT status, count(*) FROM ci WHERE build IS NULL GROUP BY status",
            "SELECT status, count(*) FROM events WHERE build_int IS NULL AND build_str IS NULL "
            "GROUP BY status",
        ),
        Case(
            "mixed field: aggregates (numbers beat strings, distinct by type)",
            "SELECT min(build), max(build), sum(build), avg(build), count(DISTINCT build), "
            "count(build) FROM ci",
            "SELECT min(build_int), min(build_str), max(build_int), max(build_str), "
            "sum(build_int), avg(build_int), "
            "count(DISTINCT build_int) + count(DISTINCT build_str), "
            "count(build_int) + count(build_str) FROM events",
            post=_coalesce((0, 1), (2, 3), 4, 5, 6, 7),
        ),
        Case(
            "mixed field: min/max over strings only",
            "SELECT min(build), max(build) FROM ci WHERE build LIKE 'b%'",
            "SELECT min(build_str), max(build_str) FROM events WHERE build_str LIKE 'b%'",
        ),
        Case(
            "mixed field: typed group keys, numbers < strings < null",
            "SELECT build, count(*) FROM ci GROUP BY build",
            "SELECT build_int, build_str, count(*) FROM events GROUP BY build_int, build_str "
            "ORDER BY build_int IS NULL, build_int, build_str IS NULL, build_str",
            ordered=True,
            post=_coalesce((0, 1), 2),
        ),
        Case(
            "mixed field: raw ORDER BY DESC reverses within a type only",
            f"SELECT build FROM ci WHERE build <= 101 OR build >= 'b138' OR build = '{v}' "
            "ORDER BY build DESC LIMIT 5000",
            f"SELECT build_int, build_str FROM events WHERE build_int <= 101 "
            f"OR build_str >= 'b138' OR build_str = '{v}' "
            "ORDER BY build_int IS NULL, build_int DESC, build_str DESC",
            ordered=True,
            post=_coalesce((0, 1)),
        ),
    ]


# --- comparing -------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell_error(got: Any, want: Any, sketch: str | None) -> str | None:
    if sketch == "distinct":
        if not (_is_number(got) and isinstance(want, int)):
            return "not a count"
        bound = 0 if want <= 4096 else 0.02 * want
        return None if abs(got - want) <= bound else f"off by {abs(got - want)} > {bound:g}"
    if sketch == "quantile":
        if not (_is_number(got) and _is_number(want)):
            return "not a number"
        bound = 0.01 * abs(want) + 1e-12
        return None if abs(got - want) <= bound else f"off by {abs(got - want):g} > {bound:g}"
    if isinstance(got, float) or isinstance(want, float):
        if not (_is_number(got) and _is_number(want)):
            return "not a number"
        return None if math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12) else "differs"
    if type(got) is not type(want) and not (_is_number(got) and _is_number(want)):
        return f"type {type(got).__name__} != {type(want).__name__}"
    return None if got == want else "differs"


def _row_key(row: Row) -> tuple[str, ...]:
    return tuple("" if isinstance(v, float) else repr(v) for v in row)


def mismatch(case: Case, got: list[list[Any]], want: list[Row]) -> str | None:
    """None when our rows answer the case as DuckDB's do, else what differs."""
    if len(got) != len(want):
        return f"{len(got)} rows, DuckDB has {len(want)}"
    pairs = list(zip(got, want, strict=True))
    if not case.ordered:
        pairs = list(zip(sorted(got, key=_row_key), sorted(want, key=_row_key), strict=True))
    for n, (g, w) in enumerate(pairs):
        if len(g) != len(w):
            return f"row {n}: {len(g)} columns, DuckDB has {len(w)}"
        for i, (a, b) in enumerate(zip(g, w, strict=True)):
            if a is None or b is None:
                error = None if a is b else "NULL on one side"
            else:
                error = _cell_error(a, b, case.sketch.get(i))
            if error:
                return f"row {n} column {i}: ours {a!r}, DuckDB {b!r}: {error}"
    return None


def test_the_comparison_catches_wrong_answers() -> None:
    plain = Case("plain", "", "")
    ordered = Case("ordered", "", "", ordered=True)
    sketches = Case("sketches", "", "", sketch={0: "distinct", 1: "quantile"})
    assert mismatch(plain, [["a", 1, 0.5], ["b", 2, None]], [("b", 2, None), ("a", 1, 0.5)]) is None
    assert mismatch(plain, [["a", 1]], [("a", 2)])
    assert mismatch(plain, [["a", 1]], [("a", 1), ("b", 1)])
    assert mismatch(plain, [[0.1 + 0.2]], [(0.3,)]) is None
    assert mismatch(plain, [[0.3001]], [(0.3,)])
    assert mismatch(plain, [["1"]], [(1,)])  # a string is not a number
    assert mismatch(plain, [[True]], [(1,)])  # nor is a bool
    assert mismatch(plain, [[None]], [(0,)])
    assert mismatch(ordered, [["b"], ["a"]], [("a",), ("b",)])
    assert mismatch(plain, [["b"], ["a"]], [("a",), ("b",)]) is None
    assert mismatch(sketches, [[4096, 1.0]], [(4096, 1.0)]) is None
    assert mismatch(sketches, [[4095, 1.0]], [(4096, 1.0)])  # exact up to 4096
    assert mismatch(sketches, [[10_190, 1.0]], [(10_000, 1.0)]) is None
    assert mismatch(sketches, [[10_210, 1.0]], [(10_000, 1.0)])
    assert mismatch(sketches, [[10, 2.019]], [(10, 2.0)]) is None
    assert mismatch(sketches, [[10, 2.021]], [(10, 2.0)])


def expected(db: duckdb.DuckDBPyConnection, case: Case) -> list[Row]:
    rows = [tuple(r) for r in db.execute(case.theirs).fetchall()]
    return [case.post(r) for r in rows] if case.post else rows


def describe(case: Case, answer: dict[str, Any], want: list[Row], why: str) -> str:
    return (
        f"{case.name}: {why}\n  ours:   {case.ours}\n  DuckDB: {case.theirs}\n"
        f"  our answer (partial={answer.get('partial')}, missing="
        f"{answer.get('missing_partitions')}):\n    {answer.get('rows')}\n"
        f"  DuckDB's:\n    {want}"
    )


# --- the clusters ----------------------------------------------------------------------------


@dataclass
class Setup:
    world: World
    db: duckdb.DuckDBPyConnection
    cluster: RunningCluster
    wide: RunningCluster  # 3 storage nodes, 8 partitions
    tmp: Path
    wants: dict[str, list[Row]] = field(default_factory=dict)


def wait_queryable(client: Client, total: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.query("SELECT count(*) FROM ci")
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


def cases_with_marks() -> list[Any]:
    # The battery's names and bugs do not depend on when the events were made.
    cases = battery(World([], [], set(), set(), 0, 0))
    return [
        pytest.param(
            case.name,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else [],
        )
        for case in cases
    ]


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
    assert battery(setup.world), "no cases"


@pytest.mark.parametrize("name", cases_with_marks())
def test_query_matches_duckdb(setup: Setup, name: str) -> None:
    case = next(c for c in battery(setup.world) if c.name == name)
    want = expected(setup.db, case)
    assert bool(want) != case.empty, f"{case.name}: DuckDB answers {want}"
    answer = setup.cluster.query(case.ours)
    setup.wants[name] = want
    assert not answer["partial"], describe(case, answer, want, "partial answer")
    assert answer["missing_partitions"] == []
    why = mismatch(case, answer["rows"], want)
    assert why is None, describe(case, answer, want, why or "")


def test_battery_is_large_enough() -> None:
    assert len(cases_with_marks()) >= 30


# --- flakehouse flaky ------------------------------------------------------------------------


def flaky_oracle(events: Sequence[Event]) -> list[list[Any]]:
    """The definitions of flakehouse.client.flaky, computed straight from the events."""
    by_commit: dict[TestKey, dict[Any, list[Event]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        if e["status"] in ("passed", "failed", "error"):
            by_commit[(str(e["classname"]), str(e["name"]))][e.get("commit")].append(e)
    rows = []
    for (classname, name), commits in by_commit.items():
        runs = flaky = failed = mixed = marked = 0
        for commit, group in commits.items():
            statuses = {e["status"] for e in group}
            both = commit is not None and "passed" in statuses and statuses & {"failed", "error"}
            mixed += bool(both)
            for e in group:
                is_marked = e.get("flaky") is True or (
                    e["status"] == "passed" and int(e.get("retries", 0)) > 0
                )
                runs += 1
                failed += e["status"] != "passed"
                marked += is_marked
                flaky += bool(both) or is_marked
        if flaky:
            rows.append(
                [classname, name, round(flaky / runs, 6), flaky, runs, failed, mixed, marked]
            )
    rows.sort(key=lambda r: (-r[2], -r[3], r[0], r[1]))
    return rows


def test_flaky_command_lists_the_planted_tests(setup: Setup) -> None:
    world = setup.world
    command = ["flaky", "--cluster", str(setup.cluster.cluster_path), "--dataset", "ci"]
    result = setup.cluster.cli(*command, "--since", "30d", "--limit", "0", "--format", "json")
    answer = json.loads(result.stdout)
    assert answer["partial"] is False
    listed = {(r[0], r[1]) for r in answer["rows"]}
    assert listed == world.mixed | world.marked
    assert answer["rows"] == flaky_oracle(world.events)
    # Mixed tests flake on whole commits, marked ones on single runs.
    assert all(r[6] > 0 for r in answer["rows"] if (r[0], r[1]) in world.mixed)
    assert all(r[7] > 0 for r in answer["rows"] if (r[0], r[1]) in world.marked)

    top = setup.cluster.cli(*command, "--since", "30d", "--limit", "2").stdout
    lines = top.splitlines()
    header = "classname name flake_rate flaky_runs runs failed_runs mixed_commits marked_runs"
    assert lines[0].split() == header.split()
    assert lines[-1] == "(2 rows)"
    assert [line.split()[:2] for line in lines[2:4]] == [r[:2] for r in answer["rows"][:2]]

    # The default window, 7 days, drops the older runs: the oracle over the same window agrees.
    week = world.now_us - FLAKY_DAYS * DAY_US
    recent = [e for e in world.events if int(e["timestamp"]) >= week]
    assert len(recent) < len(world.events)
    default = json.loads(setup.cluster.cli(*command, "--format", "json").stdout)
    assert default["rows"] == flaky_oracle(recent)
    assert default["rows"] != answer["rows"]


# --- failures --------------------------------------------------------------------------------


def run_battery(client: Client, setup: Setup, cases: list[Case]) -> list[str]:
    """Every case once through the client; the descriptions of the answers that were wrong."""
    problems = []
    for case in cases:
        want = setup.wants.get(case.name) or expected(setup.db, case)
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
    with grpc.insecure_channel(wide.info()["services"]["replication"]["grpc"]) as channel:
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
    events = setup.world.events
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
    assert "unknown function nosuch() (line 1, column 16)" in bad.stderr
    unknown = cluster.cli("query", "DESCRIBE nowhere", check=False)
    assert unknown.returncode == 2 and "unknown dataset 'nowhere'" in unknown.stderr
