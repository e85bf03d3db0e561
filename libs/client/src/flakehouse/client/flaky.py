"""`flakehouse flaky`: the tests of a dataset that flake, from two SQL queries through the query
service. The definitions, and the queries to adapt, are in docs/queries.md ("Flaky tests")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any, TypeAlias

from flakehouse.client.times import from_micros
from flakehouse.core.errors import DeadlineExceeded, Unavailable

if TYPE_CHECKING:
    # The CLI imports this module to build its options: gRPC and protobuf only for the command.
    from flakehouse.client.client import Cell, Client, QueryResult
    from flakehouse.events.values import Scalar

# name, type: the report's columns
COLUMNS_AND_TYPES = [
    ("classname", "string"),
    ("name", "string"),
    ("flake_rate", "float"),
    ("flaky_failures", "int"),
    ("runs", "int"),
    ("failed_runs", "int"),
    ("marked_runs", "int"),
    ("flaky_in", "int"),
    ("ran_in", "int"),
    ("signal", "string"),
    ("flips", "int"),
    ("last_seen", "timestamp"),
]
COLUMNS = [name for name, _ in COLUMNS_AND_TYPES]
TYPES = [kind for _, kind in COLUMNS_AND_TYPES]
FAILING = ("failed", "error")
DEFAULT_MIN_RUNS = 2
# One pass→fail flip is what any regression looks like; a second means the test failed again
# after passing in between, which is how a flake shows when each commit runs the test once.
FLIPS_TO_LIST = 2
_SINCE = re.compile(r"^\s*(\d+)\s*(m|h|d|w)\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Row: TypeAlias = "Sequence[Scalar | None]"
# A key that keeps types apart, as the query engine's groups do: commit 1 and "1" differ.
TypedKey: TypeAlias = "tuple[str, Scalar | None]"


@dataclass(frozen=True)
class FlakyTest:
    classname: Scalar | None
    name: Scalar | None
    flaky_failures: int
    runs: int
    failed_runs: int
    marked_runs: int
    signal: str  # "commits", "jobs" or "runs": what ran_in and flaky_in count
    ran_in: int
    flaky_in: int
    flips: int | None  # None for the "runs" signal: runs alone have no order
    last_seen: int  # microseconds since the epoch

    @property
    def flake_rate(self) -> float:
        return self.flaky_failures / self.runs if self.runs else 0.0

    def row(self) -> list[Cell]:
        return [
            self.classname,
            self.name,
            round(self.flake_rate, 6),
            self.flaky_failures,
            self.runs,
            self.failed_runs,
            self.marked_runs,
            self.flaky_in,
            self.ran_in,
            self.signal,
            self.flips,
            from_micros(self.last_seen),
        ]


def since_interval(text: str) -> str:
    """`7d` → `7 days`: the SQL interval of a `--since` value (m, h, d or w). ValueError
    otherwise."""
    match = _SINCE.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"--since {text!r}: expected a positive number and a unit m, h, d or w, e.g. 7d"
        )
    return f"{int(match.group(1))} {_UNITS[match.group(2)]}"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


OPTIONAL_FIELDS = ("classname", "commit", "build", "job", "flaky")
"""Fields the queries leave out when no event of the dataset carries them: the query service
refuses a field it has never seen (a typo), and these are labels many datasets lack."""


def absent_fields(client: Client, dataset: str) -> frozenset[str]:
    """The OPTIONAL_FIELDS that DESCRIBE says no event of `dataset` carries. A partial or empty
    description proves nothing (the service then checks no field either): none. Nor does a
    DESCRIBE that timed out or found no service: the queries still run, and say what they can
    (a partial answer where replicas are down) rather than the report failing on this."""
    try:
        described = client.describe(dataset)
    except (DeadlineExceeded, Unavailable):
        return frozenset()
    if described.partial or not described.fields:
        return frozenset()
    known = {f.name for f in described.fields}
    return frozenset(f for f in OPTIONAL_FIELDS if f not in known)


def _keys(unit: list[str], absent: frozenset[str]) -> list[str]:
    return [f for f in ["classname", "name", *unit, "status", "flaky"] if f not in absent]


def queries(
    dataset: str,
    since: str | None = None,
    branch: str | None = None,
    absent: frozenset[str] = frozenset(),
) -> tuple[str | None, str]:
    """The two SQL queries: runs on a commit by (classname, name, commit, status, flaky), and
    runs without one by (classname, name, build, job, status, flaky). They read disjoint runs,
    so a run that arrives between them is never counted twice. Fields in `absent` are left
    out (their values are NULL), and without a `commit` field there is no first query."""
    where = ["\"name\" IS NOT NULL AND \"status\" IN ('passed', 'failed', 'error')"]
    tail = []
    if branch is not None:
        tail.append(f'"branch" = {_string(branch)}')
    if since is not None:
        tail.append(f"timestamp >= now() - interval '{since_interval(since)}'")

    def query(unit: list[str], commit: str | None) -> str:
        keys = ", ".join(_quote(f) for f in _keys(unit, absent))
        on_commit = [] if commit is None else [f'"commit" {commit}']
        conditions = "\n  AND ".join([*where, *on_commit, *tail])
        return (
            f"SELECT {keys},\n"
            "       count(*) AS runs, min(timestamp) AS first_run, max(timestamp) AS last_run\n"
            f"FROM {_quote(dataset)}\n"
            f"WHERE {conditions}\n"
            f"GROUP BY {keys}"
        )

    if "commit" in absent:
        return None, query(["build", "job"], None)
    return query(["commit"], "IS NOT NULL"), query(["build", "job"], "IS NULL")


def _padded(rows: list[Row], unit: list[str], absent: frozenset[str]) -> list[Row]:
    """Rows of a query that left `absent` fields out, with NULL in their places."""
    if not absent & {"classname", *unit, "flaky"}:
        return rows
    every = [*_keys(unit, frozenset()), "runs", "first_run", "last_run"]
    present = [f for f in every if f not in absent]
    return [
        [dict(zip(present, row, strict=True)).get(f) for f in every]  # absent: None
        for row in rows
    ]


def _typed(value: Scalar | None) -> TypedKey:
    return (type(value).__name__, value)


def _count(value: Scalar | None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a count, got {value!r}")
    return value


@dataclass
class _Unit:
    """What one unit (a commit, or a job) saw of one test."""

    first: int
    passed: int = 0  # marked runs included: they passed in the end
    failing: int = 0
    marked: int = 0

    @property
    def flaky(self) -> bool:
        return bool(self.marked or (self.passed and self.failing))

    @property
    def flaky_failures(self) -> int:
        # Failures on code that also passed, and the failed attempts hidden in marked runs.
        return self.marked + (self.failing if self.passed else 0)


@dataclass
class _Test:
    commits: dict[TypedKey, _Unit] = field(default_factory=dict)
    jobs: dict[tuple[TypedKey, TypedKey], _Unit] = field(default_factory=dict)
    runs: int = 0
    failed: int = 0
    marked: int = 0
    lone_marked: int = 0  # marked runs in no unit
    last: int | None = None

    def add(self, unit: _Unit | None, status: Any, flaky: Any, n: int, last: int) -> None:
        failing = n if status in FAILING else 0
        passed = n if status == "passed" else 0
        marked = passed if flaky is True else 0
        self.runs += n
        self.failed += failing
        self.marked += marked
        self.last = last if self.last is None else max(self.last, last)
        if unit is None:
            self.lone_marked += marked
        else:
            unit.failing += failing
            unit.passed += passed
            unit.marked += marked

    def result(self, classname: Scalar | None, name: Scalar | None) -> FlakyTest:
        flaky_failures = self.lone_marked + sum(
            u.flaky_failures for units in (self.commits, self.jobs) for u in units.values()
        )
        units: Iterable[tuple[Any, _Unit]]
        if self.commits:
            signal, units = "commits", self.commits.items()
        elif self.jobs:
            signal, units = "jobs", self.jobs.items()
        else:
            signal, units = "runs", ()
        ordered = [u for _, u in sorted(units, key=lambda item: (item[1].first, item[0]))]
        if ordered:
            ran_in, flaky_in = len(ordered), sum(u.flaky for u in ordered)
            flips: int | None = sum(1 for a, b in pairwise(ordered) if not a.failing and b.failing)
        else:
            ran_in, flaky_in, flips = self.runs, self.marked, None
        assert self.last is not None
        return FlakyTest(
            classname,
            name,
            flaky_failures=flaky_failures,
            runs=self.runs,
            failed_runs=self.failed,
            marked_runs=self.marked,
            signal=signal,
            ran_in=ran_in,
            flaky_in=flaky_in,
            flips=flips,
            last_seen=self.last,
        )


def rank(
    commit_rows: Iterable[Row],
    job_rows: Iterable[Row],
    *,
    min_runs: int = DEFAULT_MIN_RUNS,
    limit: int | None = None,
) -> list[FlakyTest]:
    """The flaky tests, worst first (docs/queries.md, "Flaky tests"), from the rows of the two
    queries of `queries`: (classname, name, commit, status, flaky, runs, first_run, last_run)
    and (classname, name, build, job, status, flaky, runs, first_run, last_run), times in
    microseconds. Pure: no I/O; one pass over the rows, then a sort of each test's units."""
    tests: dict[tuple[TypedKey, TypedKey], _Test] = {}
    names: dict[tuple[TypedKey, TypedKey], tuple[Scalar | None, Scalar | None]] = {}

    def test_of(classname: Scalar | None, name: Scalar | None) -> _Test:
        key = (_typed(classname), _typed(name))
        if key not in tests:
            tests[key], names[key] = _Test(), (classname, name)
        return tests[key]

    for classname, name, commit, status, flaky, runs, first, last in commit_rows:
        if name is None:  # not a test: the queries leave these out, and so does the rule
            continue
        test = test_of(classname, name)
        unit = test.commits.setdefault(_typed(commit), _Unit(_count(first)))
        unit.first = min(unit.first, _count(first))
        test.add(unit, status, flaky, _count(runs), _count(last))
    for classname, name, build, job, status, flaky, runs, first, last in job_rows:
        if name is None:
            continue
        test = test_of(classname, name)
        job_unit = None
        if build is not None:  # a job name alone repeats in every pipeline: not one job
            job_unit = test.jobs.setdefault((_typed(build), _typed(job)), _Unit(_count(first)))
            job_unit.first = min(job_unit.first, _count(first))
        test.add(job_unit, status, flaky, _count(runs), _count(last))

    listed = []
    for key, test in tests.items():
        if test.runs < min_runs:
            continue
        found = test.result(*names[key])
        if found.flaky_failures or (found.flips or 0) >= FLIPS_TO_LIST:
            listed.append(found)
    listed.sort(key=order)
    return listed if limit is None else listed[:limit]


def order(test: FlakyTest) -> tuple[Any, ...]:
    """Worst first: flake rate, flips, flaky failures and runs descending, then classname and
    name ascending (a missing one last)."""
    return (
        -test.flake_rate,
        -(test.flips or 0),
        -test.flaky_failures,
        -test.runs,
        _sort_key(test.classname),
        _sort_key(test.name),
    )


def _sort_key(value: Scalar | None) -> tuple[int, str]:
    return (1, "") if value is None else (0, str(value))


def flaky_tests(
    client: Client,
    dataset: str,
    since: str | None,
    limit: int | None,
    *,
    branch: str | None = None,
    min_runs: int = DEFAULT_MIN_RUNS,
    timeout_ms: int = 0,
) -> QueryResult:
    """Runs the queries and ranks: a QueryResult with COLUMNS, partial when either query was."""
    from flakehouse.client.client import QueryResult

    absent = absent_fields(client, dataset)
    answers = []
    rows: list[list[Row]] = []
    units = (["commit"], ["build", "job"])
    for sql, unit in zip(queries(dataset, since, branch, absent), units, strict=True):
        if sql is None:
            rows.append([])
            continue
        answer = client.query(sql, timeout_ms=timeout_ms, raw_times=True)
        answers.append(answer)
        rows.append(_padded(_scalars(answer.rows), unit, absent))
    missing: dict[tuple[Any, ...], dict[str, Any]] = {}
    for answer in answers:
        for m in answer.missing_partitions:
            missing.setdefault((m["dataset"], m["partition"]), m)
    commit_rows, job_rows = rows
    ranked = rank(commit_rows, job_rows, min_runs=min_runs, limit=limit)
    return QueryResult(
        columns=list(COLUMNS),
        types=list(TYPES),
        rows=[t.row() for t in ranked],
        partial=any(answer.partial for answer in answers),
        missing_partitions=[missing[k] for k in sorted(missing)],
    )


def _scalars(rows: list[list[Cell]]) -> list[Row]:
    """The rows of a query asked with raw_times, typed as what they are: no datetime in them."""
    out: list[Row] = []
    for row in rows:
        scalars: list[Scalar | None] = []
        for cell in row:
            assert not isinstance(cell, datetime), "the flaky queries ask for raw times"
            scalars.append(cell)
        out.append(scalars)
    return out
