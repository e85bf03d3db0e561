"""The oracle's side of tests/test_query_oracle.py: a seeded world of CI events, the same events
in DuckDB, the comparison of our answers with DuckDB's, and `flakehouse flaky` computed directly.

The generator writes JSON-lines events (so the events stored are exactly ours): suites,
classnames and names, a few % failures/errors/skips, lognormal durations, sparse int `retries`,
bool `flaky`, sparse `prop.os`/`prop.browser`, a `build` that is an int in some events and a
string in others, ten days of timestamps, `branch` and `commit`, and tests planted as flaky.
DuckDB needs one type per column, so `build` is two columns there, `build_int` and `build_str`,
and each DuckDB query spells out the documented coercion (numbers compare with numbers only, a
string never becomes a number, groups and distinct values are keyed by type and value).

Skipped runs around the last two daylight-saving changes of Europe/Paris and
America/New_York before now (`DST_ZONES`) put days of 23 and 25 hours in the data, for the cases
that bucket by a zone's calendar.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from flakehouse.events.timestamps import format_timestamp
from tests.flaky_reference import flaky_reference

Scalar = str | int | float | bool
Event = dict[str, Scalar]
TestKey = tuple[str, str]

SEED = 20261122
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
DST_ZONES = ("Europe/Paris", "America/New_York")
# Around each change: a skipped run every hour for a day either side, every 30 minutes for the
# 6 hours either side (both runs of a repeated hour, when clocks go back).
DST_OFFSETS_US = sorted(
    {
        *range(-24 * HOUR_US, 24 * HOUR_US, HOUR_US),
        *range(-6 * HOUR_US, 6 * HOUR_US, 30 * MINUTE_US),
    }
)
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
    for zone in DST_ZONES:
        for change in dst_changes(zone, now_us):
            job = []
            for delta in DST_OFFSETS_US:
                suite, classname, name, _ = rng.choice(tests)
                # Skipped: `flakehouse flaky` counts no skipped run, whatever its time.
                job.append(
                    {
                        "timestamp": unique(change + delta + rng.randrange(MINUTE_US)),
                        "suite": suite,
                        "classname": classname,
                        "name": name,
                        "status": "skipped",
                        "hostname": f"ci-{rng.randrange(8)}",
                        "line": 10 + len(name) * 3,
                        "run_id": f"dst-{zone}-{change}-{len(job)}",
                        "message": "skipped: not on this platform",
                    }
                )
            jobs.append(job)
    events = [e for job in jobs for e in job]
    return World(events, jobs, mixed, marked, now_us, twin_build=123)


def dst_changes(zone: str, before_us: int, count: int = 2) -> list[int]:
    """The last `count` changes of a zone's UTC offset before a time (on the hour, within 400
    days), latest first, in microseconds; fewer when there are none (a zone without daylight
    saving, or a time before zones had it)."""
    info = ZoneInfo(zone)
    hour = before_us - before_us % HOUR_US
    changes: list[int] = []

    def offset(micros: int) -> timedelta | None:
        return (
            (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros))
            .astimezone(info)
            .utcoffset()
        )

    current = offset(hour)
    for _ in range(400 * 24):
        if len(changes) == count:
            break
        previous = offset(hour - HOUR_US)
        if previous != current:
            changes.append(hour)
            current = previous
        hour -= HOUR_US
    return changes


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


# --- the cases and the comparison -----------------------------------------------------------

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
    # Columns answered as times (RFC 3339 text in JSON, datetime from the Python client):
    # DuckDB's int microseconds there are compared as that text.
    times: tuple[int, ...] = ()
    # The query's time zone: our QueryRequest.time_zone, and DuckDB's TimeZone setting for the
    # case (UTC otherwise, whatever the machine's zone).
    zone: str = ""


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
    got = [[_as_text(v) for v in row] for row in got]
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


def expected(db: duckdb.DuckDBPyConnection, case: Case) -> list[Row]:
    db.execute(f"SET TimeZone = '{case.zone or 'UTC'}'")
    rows = [tuple(r) for r in db.execute(case.theirs).fetchall()]
    rows = [case.post(r) for r in rows] if case.post else rows
    if case.times:
        rows = [
            tuple(_rfc3339(v) if i in case.times and v is not None else v for i, v in enumerate(r))
            for r in rows
        ]
    return rows


_TIME_TEXT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How answers show a time in UTC: 2026-11-20T09:14:03.512345Z."""


def _rfc3339(micros: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment.strftime(_TIME_TEXT)


def _as_text(value: Any) -> Any:
    """Our cell as the JSON answer shows it: a datetime (from the Python client) as RFC 3339."""
    if isinstance(value, datetime):
        assert value.utcoffset() == timedelta(0), f"{value!r} is not in UTC"
        return value.strftime(_TIME_TEXT)
    return value


def describe(case: Case, answer: dict[str, Any], want: list[Row], why: str) -> str:
    return (
        f"{case.name}: {why}\n  ours:   {case.ours}\n  DuckDB: {case.theirs}\n"
        f"  our answer (partial={answer.get('partial')}, missing="
        f"{answer.get('missing_partitions')}):\n    {answer.get('rows')}\n"
        f"  DuckDB's:\n    {want}"
    )


# --- flakehouse flaky ------------------------------------------------------------------------


def flaky_oracle(events: Sequence[Event], **options: Any) -> list[list[Any]]:
    """`flakehouse flaky --format json`'s rows over the events, from tests/flaky_reference.py
    (options: since_us, branch, min_runs, limit)."""
    return [[*r[:-1], _rfc3339(r[-1])] for r in flaky_reference(events, **options)]


def without_commits(world: World) -> list[Event]:
    """The events as a CI that labels no commit sends them: each job's runs carry `build`
    (the job's number) and `job`, except the runs of the tests planted as marked, which carry
    neither (so only their marks can show them), and no event has a `commit` or `branch`."""
    events = []
    for i, job in enumerate(world.jobs):
        for event in job:
            bare = {k: v for k, v in event.items() if k not in ("commit", "branch", "build")}
            if (event["classname"], event["name"]) not in world.marked:
                bare |= {"build": f"build-{i}", "job": "test"}
            events.append(bare)
    return events
