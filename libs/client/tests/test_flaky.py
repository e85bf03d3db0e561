"""`flakehouse flaky` (flakehouse.client.flaky): the definitions on hand-made query answers, the
two bugs of issue 15 item 8, and the SQL it sends (the planner takes it; the docs show it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flakehouse.client.flaky import FlakyTest, queries, rank, since_interval
from flakehouse.query.sql import PlannedQuery, parse_statement

DOCS = Path(__file__).resolve().parents[3] / "docs" / "queries.md"


def on_commits(*rows: tuple[object, ...]) -> list[tuple[object, ...]]:
    """Rows of the commit query from (classname, name, commit, status, runs[, flaky, first]):
    `first` (default: the row's position) orders the commits; last_run is first + 1."""
    out = []
    for i, row in enumerate(rows):
        classname, name, commit, status, runs, *rest = row
        flaky = rest[0] if rest else False
        first = rest[1] if len(rest) > 1 else i
        out.append((classname, name, commit, status, flaky, runs, first, first + 1))
    return out


def in_jobs(*rows: tuple[object, ...]) -> list[tuple[object, ...]]:
    """Rows of the job query from (classname, name, build, job, status, runs[, flaky])."""
    return [
        (c, n, b, j, s, *(rest or [False]), runs, i, i + 1)
        for i, (c, n, b, j, s, runs, *rest) in enumerate(rows)
    ]


# --- the two bugs of issue 15, item 8 --------------------------------------------------------


def test_rows_without_a_name_are_not_a_test() -> None:
    # The phantom: four nameless testcases on one commit, one passed and three failed, were one
    # test with flake_rate 1, ranked first.
    nameless = on_commits((None, None, "c1", "passed", 1), (None, None, "c1", "failed", 3))
    assert rank(nameless, []) == []
    assert rank([], in_jobs((None, None, "b1", "unit", "passed", 1, True))) == []
    assert '"name" IS NOT NULL' in queries("ci")[0] and '"name" IS NOT NULL' in queries("ci")[1]


def test_two_failed_runs_out_of_six_is_a_rate_of_one_third() -> None:
    # The old rate counted every run of a mixed commit as flaky: 6 / 6.
    [test] = rank(on_commits(("C", "t", "c1", "passed", 4), ("C", "t", "c1", "failed", 2)), [])
    assert (test.flaky_failures, test.runs, test.flaky_in, test.ran_in) == (2, 6, 1, 1)
    assert test.row()[2] == 0.333333


# --- the definitions -------------------------------------------------------------------------


def test_a_flaky_failure_is_a_failure_on_a_commit_where_the_test_also_passed() -> None:
    rows = on_commits(
        ("C", "t", "c1", "passed", 3),
        ("C", "t", "c1", "failed", 1),
        ("C", "t", "c2", "passed", 4),
        ("C", "t", "c3", "error", 2),  # failing only: a broken commit, not a flake
    )
    [test] = rank(rows, [])
    assert test == FlakyTest(
        "C",
        "t",
        flaky_failures=1,
        runs=10,
        failed_runs=3,
        marked_runs=0,
        signal="commits",
        ran_in=3,
        flaky_in=1,
        flips=1,  # c1 failed (a run did), c2 passed, c3 failed
        last_seen=4,
    )
    assert test.flake_rate == pytest.approx(0.1)


def test_error_counts_as_a_failure() -> None:
    [test] = rank(on_commits(("C", "t", "c1", "passed", 1), ("C", "t", "c1", "error", 1)), [])
    assert (test.flaky_failures, test.flaky_in) == (1, 1)


def test_a_marked_run_is_a_flaky_failure_and_makes_its_commit_flaky() -> None:
    rows = on_commits(
        ("C", "t", "c1", "passed", 3, False),
        ("C", "t", "c1", "passed", 1, True),  # passed after a flakyFailure
        ("C", "t", "c2", "passed", 1, True),
        ("C", "t", "c2", "failed", 2),  # the test passed on c2: both failures are flaky
        ("C", "t", "c3", "failed", 1, True),  # a mark on a failed run means nothing
    )
    [test] = rank(rows, [])
    assert (test.flaky_failures, test.marked_runs, test.flaky_in, test.ran_in) == (4, 2, 2, 3)
    assert (test.runs, test.failed_runs) == (8, 3)


def test_commits_are_keyed_by_type_as_the_engine_groups_them() -> None:
    rows = on_commits(("C", "t", 7, "passed", 1), ("C", "t", "7", "failed", 1))
    assert rank(rows, [], min_runs=1) == []


def test_without_a_commit_a_job_is_the_unit() -> None:
    rows = in_jobs(
        ("C", "t", "b1", "unit", "failed", 1),
        ("C", "t", "b1", "unit", "passed", 1),  # rerun in the same job: a flake
        ("C", "t", "b1", "it", "failed", 1),  # another job of the same build
        ("C", "t", "b2", "unit", "passed", 2),
    )
    [test] = rank([], rows)
    assert (test.signal, test.ran_in, test.flaky_in, test.flaky_failures) == ("jobs", 3, 1, 1)
    assert test.flips == 0  # b1/unit (failed), b1/it (failed), b2/unit (passed)


def test_a_job_name_without_a_build_is_not_one_job() -> None:
    # GITHUB_JOB or CI_JOB_NAME alone repeat in every pipeline: these runs are in no unit, and
    # only the runner's marks count.
    rows = in_jobs(
        ("C", "t", None, "unit", "failed", 1),
        ("C", "t", None, "unit", "passed", 3),
        ("C", "t", None, "unit", "passed", 1, True),
    )
    [test] = rank([], rows)
    assert (test.signal, test.ran_in, test.flaky_in, test.flaky_failures) == ("runs", 5, 1, 1)
    assert test.flips is None and test.row()[2] == 0.2


def test_a_test_with_commits_is_judged_on_commits_and_its_other_runs_still_count() -> None:
    commits = on_commits(("C", "t", "c1", "passed", 2))
    jobs = in_jobs(("C", "t", "b9", "unit", "failed", 1), ("C", "t", "b9", "unit", "passed", 1))
    [test] = rank(commits, jobs)
    assert (test.signal, test.ran_in, test.flaky_in) == ("commits", 1, 0)
    assert (test.flaky_failures, test.runs) == (1, 4)


def test_two_pass_to_fail_flips_list_a_test_that_never_failed_twice_on_one_commit() -> None:
    statuses = ["passed", "failed", "passed", "failed", "failed", "passed"]
    rows = on_commits(*(("C", "t", f"c{i}", s, 1) for i, s in enumerate(statuses)))
    [test] = rank(rows, [])
    assert (test.flips, test.flaky_failures, test.flake_rate) == (2, 0, 0.0)
    once = on_commits(*(("C", "t", f"c{i}", s, 1) for i, s in enumerate(statuses[:3])))
    assert rank(once, []) == []  # one flip: what any regression looks like


def test_commits_are_ordered_by_their_first_run() -> None:
    # c2 ran first although its failed run sorts later; c1's passed run came last.
    rows = on_commits(
        ("C", "t", "c1", "failed", 1, False, 30),
        ("C", "t", "c1", "passed", 1, False, 10),
        ("C", "t", "c2", "failed", 1, False, 5),
        ("C", "t", "c3", "passed", 1, False, 40),
        ("C", "t", "c4", "failed", 1, False, 50),
    )
    [test] = rank(rows, [])
    assert test.flips == 1  # c2 fail, c1 fail (mixed), c3 pass, c4 fail
    assert test.last_seen == 51


def test_tests_with_fewer_runs_than_min_runs_are_left_out() -> None:
    rows = on_commits(("C", "t", "c1", "passed", 1, True))
    assert rank(rows, []) == []
    [test] = rank(rows, [], min_runs=1)
    assert (test.flake_rate, test.flaky_in, test.ran_in) == (1.0, 1, 1)


def test_tests_that_never_flake_are_not_listed() -> None:
    rows = on_commits(
        ("C", "steady", "c1", "passed", 5),
        ("C", "broken", "c1", "failed", 5),
        ("C", "fixed", "c1", "failed", 2),
        ("C", "fixed", "c2", "passed", 2),  # a regression then its fix: different commits
    )
    assert rank(rows, []) == []


def test_ranked_by_rate_then_flips_then_flaky_failures_then_runs_then_name() -> None:
    rows = on_commits(
        ("C", "a", "c1", "passed", 1),  # 1/2
        ("C", "a", "c1", "failed", 1),
        ("C", "z", "c1", "passed", 2),  # 2/4
        ("C", "z", "c1", "failed", 2),
        ("C", "b", "c1", "passed", 1),  # 1/2, like a, and after it by name
        ("C", "b", "c1", "failed", 1),
        ("D", "x", "c1", "passed", 1),  # 3/4
        ("D", "x", "c1", "failed", 3),
        (None, "b", "c1", "passed", 1),  # 1/2: a missing classname last
        (None, "b", "c1", "failed", 1),
        ("E", "f", "c1", "passed", 1),  # 0, two flips
        ("E", "f", "c2", "failed", 1),
        ("E", "f", "c3", "passed", 1),
        ("E", "f", "c4", "failed", 1),
        ("C", "y", "c0", "passed", 1, False, -1),  # 2/4 and a flip: before the other 1/2s
        ("C", "y", "c1", "passed", 1),
        ("C", "y", "c1", "failed", 2),
    )
    ranked = rank(rows, [])
    assert [(t.classname, t.name) for t in ranked] == [
        ("D", "x"),
        ("C", "y"),
        ("C", "z"),
        ("C", "a"),
        ("C", "b"),
        (None, "b"),
        ("E", "f"),
    ]
    assert [t.name for t in rank(rows, [], limit=2)] == ["x", "y"]


def test_a_count_that_is_not_an_int_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a count"):
        rank(on_commits(("C", "t", "c", "passed", "3")), [])


# --- the queries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "interval"),
    [("7d", "7 days"), ("12h", "12 hours"), (" 30 m ", "30 minutes"), ("2w", "2 weeks")],
)
def test_since_becomes_an_interval(text: str, interval: str) -> None:
    assert since_interval(text) == interval


@pytest.mark.parametrize("text", ["", "7", "0d", "-1d", "1y", "1 month", "d7"])
def test_bad_since_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        since_interval(text)


def test_queries_quote_names_and_bound_the_window_and_branch() -> None:
    on_commit, without = queries("nightly-2", "7d", "it's")
    for sql in (on_commit, without):
        assert 'FROM "nightly-2"' in sql
        assert "timestamp >= now() - interval '7 days'" in sql
        assert "\"branch\" = 'it''s'" in sql
    assert '"commit" IS NOT NULL' in on_commit and '"commit" IS NULL' in without
    assert 'GROUP BY "classname", "name", "commit", "status", "flaky"' in on_commit
    assert 'GROUP BY "classname", "name", "build", "job", "status", "flaky"' in without
    assert all("timestamp >=" not in q and "branch" not in q for q in queries("ci"))


@pytest.mark.parametrize(("since", "branch"), [(None, None), ("30m", "main"), ("2w", "a'b")])
def test_the_planner_takes_the_queries(since: str | None, branch: str | None) -> None:
    # Plain GROUP BY and counts (the ranking combines the rows itself): planned as the query
    # service would.
    for sql in queries("ci", since, branch):
        planned = parse_statement(sql, now_us=1_800_000_000_000_000)
        assert isinstance(planned, PlannedQuery)
        assert planned.plan.dataset == "ci"
        assert len(planned.plan.aggregates) == 3


def test_the_docs_show_the_queries_the_command_sends() -> None:
    docs = DOCS.read_text()
    assert "flakehouse flaky --dataset ci --branch main" in docs
    for sql in queries("ci", "7d", "main"):
        assert f"```sql\n{sql}\n```" in docs
