"""`flakehouse flaky`: the tests of a dataset that flake, ranked by flake rate, computed from two
SQL queries through the query service and combined here (the SQL subset has no CASE/FILTER).

Definitions, over the runs in the window (`--since`, on `timestamp`):

- A *test* is a (`classname`, `name`) pair. A *run* is one event of the test whose `status` is
  `passed`, `failed` or `error`; skipped runs are not runs here (they say nothing either way).
- A *mixed commit* of a test is a `commit` value on which the test has at least one `passed` run
  and at least one `failed` or `error` run: the same code both passed and failed. Runs without a
  `commit` never make a mixed commit, since nothing says they ran the same code.
- A run is *flaky* when its commit is a mixed commit of its test (every run of the test on that
  commit, whatever its status), or when the runner marked it: `flaky = true`, or `retries > 0`
  with status `passed` (it passed only after retrying). A run is counted once even when both
  hold.
- *Flake rate* = flaky runs ÷ runs of the test, in [0, 1].

Listed: the tests with at least one flaky run, by flake rate descending, then flaky runs
descending, then classname and name ascending; `--limit` keeps the first N. The answer is partial
(and says which partitions are missing) when either query was.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flakehouse.client.client import Cell, Client, QueryResult
from flakehouse.events.values import Scalar

COLUMNS = [
    "classname",
    "name",
    "flake_rate",
    "flaky_runs",
    "runs",
    "failed_runs",
    "mixed_commits",
    "marked_runs",
]
TYPES = ["string", "string", "float", "int", "int", "int", "int", "int"]
FAILING = ("failed", "error")
_RUN_STATUSES = "('passed', 'failed', 'error')"
_SINCE = re.compile(r"^\s*(\d+)\s*(m|h|d|w)\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Row = Sequence[Scalar | None]
TestKey = tuple[Scalar | None, Scalar | None]
# A group key that keeps types apart, as the query engine does: commit 1 and "1" differ.
TypedKey = tuple[str, Scalar | None]


@dataclass(frozen=True)
class FlakyTest:
    classname: Scalar | None
    name: Scalar | None
    runs: int
    flaky_runs: int
    failed_runs: int
    mixed_commits: int
    marked_runs: int

    @property
    def flake_rate(self) -> float:
        return self.flaky_runs / self.runs if self.runs else 0.0

    def row(self) -> list[Cell]:
        return [
            self.classname,
            self.name,
            round(self.flake_rate, 6),
            self.flaky_runs,
            self.runs,
            self.failed_runs,
            self.mixed_commits,
            self.marked_runs,
        ]


@dataclass
class _Commit:
    passed: int = 0
    failing: int = 0
    other: int = 0
    marked: int = 0


@dataclass
class _Test:
    commits: dict[TypedKey, _Commit] = field(default_factory=dict)


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


def queries(dataset: str, since: str | None) -> tuple[str, str]:
    """The two SQL queries: runs by (classname, name, commit, status), and runs the runner
    marked flaky by (classname, name, commit)."""
    source = _quote(dataset)
    window = f" AND timestamp >= now() - interval '{since_interval(since)}'" if since else ""
    runs = (
        'SELECT "classname", "name", "commit", "status", count(*) '
        f'FROM {source} WHERE "status" IN {_RUN_STATUSES}{window} '
        'GROUP BY "classname", "name", "commit", "status"'
    )
    marked = (
        'SELECT "classname", "name", "commit", count(*) '
        f'FROM {source} WHERE "status" IN {_RUN_STATUSES}{window} '
        'AND ("flaky" = TRUE OR ("retries" > 0 AND "status" = \'passed\')) '
        'GROUP BY "classname", "name", "commit"'
    )
    return runs, marked


def _typed(value: Scalar | None) -> TypedKey:
    return (type(value).__name__, value)


def _count(value: Scalar | None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a count, got {value!r}")
    return value


def rank(runs: Iterable[Row], marked: Iterable[Row], limit: int | None = None) -> list[FlakyTest]:
    """Flaky tests, ranked (module docstring), from the rows of the two queries of `queries`:
    `runs` rows are (classname, name, commit, status, count), `marked` rows are (classname,
    name, commit, count). Pure: no I/O."""
    tests: dict[TestKey, _Test] = defaultdict(_Test)
    for classname, name, commit, status, count in runs:
        entry = tests[(classname, name)].commits.setdefault(_typed(commit), _Commit())
        n = _count(count)
        if status == "passed":
            entry.passed += n
        elif status in FAILING:
            entry.failing += n
        else:  # not asked for; counted as runs all the same rather than dropped silently
            entry.other += n
    for classname, name, commit, count in marked:
        test = tests.get((classname, name))
        # A marked run is also a run, so the first query saw it; if not, the two queries read
        # different data (ingest in between): the run count wins, the mark is ignored.
        if test is not None and _typed(commit) in test.commits:
            test.commits[_typed(commit)].marked += _count(count)

    ranked = []
    for (classname, name), test in tests.items():
        total = flaky = failed = mixed = marked_runs = 0
        for (_, commit), c in test.commits.items():
            runs_here = c.passed + c.failing + c.other
            total += runs_here
            failed += c.failing
            marked_here = min(c.marked, runs_here)
            marked_runs += marked_here
            if commit is not None and c.passed and c.failing:
                mixed += 1
                flaky += runs_here
            else:
                flaky += marked_here
        if flaky:
            ranked.append(FlakyTest(classname, name, total, flaky, failed, mixed, marked_runs))
    ranked.sort(
        key=lambda t: (-t.flake_rate, -t.flaky_runs, _sort_key(t.classname), _sort_key(t.name))
    )
    return ranked if limit is None else ranked[:limit]


def _sort_key(value: Scalar | None) -> tuple[int, str]:
    return (1, "") if value is None else (0, str(value))


def flaky_tests(
    client: Client, dataset: str, since: str | None, limit: int | None, timeout_ms: int = 0
) -> QueryResult:
    """Runs the queries and ranks: a QueryResult with COLUMNS, partial when either query was."""
    runs_sql, marked_sql = queries(dataset, since)
    runs = client.query(runs_sql, timeout_ms=timeout_ms, raw_times=True)
    marked = client.query(marked_sql, timeout_ms=timeout_ms, raw_times=True)
    missing: dict[tuple[Any, ...], dict[str, Any]] = {}
    for m in runs.missing_partitions + marked.missing_partitions:
        missing.setdefault((m["dataset"], m["partition"]), m)
    return QueryResult(
        columns=list(COLUMNS),
        types=list(TYPES),
        rows=[t.row() for t in rank(_scalars(runs.rows), _scalars(marked.rows), limit)],
        partial=runs.partial or marked.partial,
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
