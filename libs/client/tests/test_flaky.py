"""The ranking of `flakehouse flaky` (flakehouse.client.flaky): definitions on hand-made rows."""

from __future__ import annotations

import pytest

from flakehouse.client.flaky import FlakyTest, queries, rank, since_interval


def test_a_commit_that_saw_both_outcomes_makes_all_its_runs_flaky() -> None:
    runs = [
        ("C", "t", "c1", "passed", 3),
        ("C", "t", "c1", "failed", 1),
        ("C", "t", "c2", "passed", 4),
        ("C", "t", "c3", "error", 2),  # failing only: a broken commit, not a flake
    ]
    [test] = rank(runs, [])
    want = FlakyTest("C", "t", runs=10, flaky_runs=4, failed_runs=3, mixed_commits=1, marked_runs=0)
    assert test == want
    assert test.flake_rate == pytest.approx(0.4)


def test_error_counts_as_a_failure_for_a_mixed_commit() -> None:
    [test] = rank([("C", "t", "c1", "passed", 1), ("C", "t", "c1", "error", 1)], [])
    assert (test.flaky_runs, test.mixed_commits) == (2, 1)


def test_tests_that_never_flake_are_not_listed() -> None:
    runs = [
        ("C", "steady", "c1", "passed", 5),
        ("C", "broken", "c1", "failed", 5),
        ("C", "fixed", "c1", "failed", 2),
        ("C", "fixed", "c2", "passed", 2),  # a regression then its fix: different commits
    ]
    assert rank(runs, []) == []


def test_runs_without_a_commit_never_make_a_mixed_commit() -> None:
    runs = [("C", "t", None, "passed", 3), ("C", "t", None, "failed", 1)]
    assert rank(runs, []) == []


def test_commits_are_keyed_by_type_as_the_engine_groups_them() -> None:
    runs = [("C", "t", 7, "passed", 1), ("C", "t", "7", "failed", 1)]
    assert rank(runs, []) == []


def test_runs_marked_by_the_runner_are_flaky_and_counted_once() -> None:
    runs = [
        ("C", "t", "c1", "passed", 10),
        ("C", "t", "c2", "passed", 2),
        ("C", "t", "c2", "failed", 1),
        ("C", "t", None, "passed", 4),
    ]
    marked = [("C", "t", "c1", 2), ("C", "t", "c2", 1), ("C", "t", None, 1)]
    [test] = rank(runs, marked)
    # c1: 2 marked; c2: mixed, all 3 runs (its marked run not counted twice); no commit: 1.
    assert (test.runs, test.flaky_runs, test.marked_runs, test.mixed_commits) == (17, 6, 4, 1)
    assert test.row()[2] == round(6 / 17, 6)


def test_marks_for_runs_the_first_query_did_not_see_are_ignored() -> None:
    assert rank([("C", "t", "c1", "passed", 1)], [("C", "t", "c9", 1), ("C", "u", "c1", 1)]) == []


def test_ranked_by_rate_then_flaky_runs_then_name_and_limited() -> None:
    runs = [
        # rate 1/2, 1 flaky run
        ("C", "b", None, "passed", 2),
        # rate 1/2, 2 flaky runs
        ("C", "z", "c", "passed", 1),
        ("C", "z", "c", "failed", 1),
        ("C", "z", "d", "passed", 2),
        # rate 1/2, 1 flaky run, sorts before b by name
        ("C", "a", None, "passed", 2),
        # rate 1
        ("D", "x", "c", "passed", 1),
        ("D", "x", "c", "failed", 1),
    ]
    marked = [("C", "b", None, 1), ("C", "a", None, 1)]
    ranked = rank(runs, marked)
    assert [(t.classname, t.name) for t in ranked] == [
        ("D", "x"),
        ("C", "z"),
        ("C", "a"),
        ("C", "b"),
    ]
    assert [t.name for t in rank(runs, marked, limit=2)] == ["x", "z"]


def test_a_missing_classname_sorts_last_among_equals() -> None:
    runs = [(None, "a", None, "passed", 1), ("C", "a", None, "passed", 1)]
    marked = [(None, "a", None, 1), ("C", "a", None, 1)]
    assert [t.classname for t in rank(runs, marked)] == ["C", None]


def test_a_count_that_is_not_an_int_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a count"):
        rank([("C", "t", "c", "passed", "3")], [])


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


def test_queries_quote_names_and_bound_the_window() -> None:
    runs, marked = queries("nightly-2", "7d")
    assert 'FROM "nightly-2"' in runs and 'FROM "nightly-2"' in marked
    assert "timestamp >= now() - interval '7 days'" in runs
    assert "timestamp >= now() - interval '7 days'" in marked
    assert 'GROUP BY "classname", "name", "commit", "status"' in runs
    assert '"flaky" = TRUE OR ("retries" > 0 AND "status" = \'passed\')' in marked
    assert "timestamp" not in queries("ci", None)[0]
