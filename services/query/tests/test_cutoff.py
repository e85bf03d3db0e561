"""A query's cutoff: taken from the dataset's limits at one moment, applied to the plan's time
range, and shown by EXPLAIN."""

from __future__ import annotations

from flakehouse.common.v1 import plan_pb2
from flakehouse.core.limits import current_limits
from flakehouse.query.cutoff import QueryCutoff, query_cutoff, with_cutoff
from flakehouse.query.explain import cutoff_text, explain_lines
from flakehouse.query.sql import PlannedQuery, parse_statement
from flakehouse.quota.v1 import quota_pb2

HOUR_US = 3_600_000_000
NOW_US = 1_795_000_000_000_000  # in November 2026
RETENTION = quota_pb2.CUTOFF_REASON_RETENTION
STORED_BYTES = quota_pb2.CUTOFF_REASON_STORED_BYTES


def limits(
    retention_s: int = 0,
    floor_us: int = 0,
    reason: quota_pb2.CutoffReason.ValueType = quota_pb2.CUTOFF_REASON_UNSPECIFIED,
) -> quota_pb2.DatasetLimits:
    return quota_pb2.DatasetLimits(
        quota=quota_pb2.Quota(dataset="ci", retention_seconds=retention_s),
        floor=quota_pb2.Cutoff(cutoff_us=floor_us, reason=reason),
    )


def time_range(start: int | None = None, end: int | None = None) -> plan_pb2.TimeRange:
    return plan_pb2.TimeRange(start_us=start, end_us=end)


# -- applying it -----------------------------------------------------------------------------


def test_a_range_without_start_starts_at_the_cutoff() -> None:
    assert with_cutoff(plan_pb2.TimeRange(), 100) == time_range(100)
    assert with_cutoff(time_range(end=500), 100) == time_range(100, 500)


def test_a_start_before_the_cutoff_moves_up_to_it() -> None:
    assert with_cutoff(time_range(40, 500), 100) == time_range(100, 500)


def test_a_start_after_the_cutoff_stays() -> None:
    assert with_cutoff(time_range(300), 100) == time_range(300)
    assert with_cutoff(time_range(100), 100) == time_range(100)


def test_a_range_ending_before_the_cutoff_becomes_empty() -> None:
    narrowed = with_cutoff(time_range(10, 50), 100)
    assert narrowed == time_range(100, 50)
    assert narrowed.start_us >= narrowed.end_us


def test_the_range_given_is_left_as_it_was() -> None:
    original = time_range(10)
    with_cutoff(original, 100)
    assert original == time_range(10)


# -- where it is -----------------------------------------------------------------------------


def test_no_limits_or_no_time_limit_means_no_cutoff() -> None:
    assert query_cutoff(None, NOW_US) is None
    assert query_cutoff(limits(), NOW_US) is None


def test_retention_cuts_at_now_minus_the_retention() -> None:
    assert query_cutoff(limits(retention_s=7200), NOW_US) == QueryCutoff(
        NOW_US - 2 * HOUR_US, RETENTION, retention_s=7200
    )


def test_a_later_floor_wins_over_retention_with_its_reason() -> None:
    floor = NOW_US - HOUR_US
    assert query_cutoff(limits(7200, floor, STORED_BYTES), NOW_US) == QueryCutoff(
        floor, STORED_BYTES
    )
    # An earlier floor does not.
    earlier = query_cutoff(limits(7200, NOW_US - 3 * HOUR_US, STORED_BYTES), NOW_US)
    assert earlier == QueryCutoff(NOW_US - 2 * HOUR_US, RETENTION, retention_s=7200)


def test_a_retention_floor_left_by_a_longer_retention_is_not_the_retention_of_now() -> None:
    # Retention was 1h, then lengthened to 7d: rows older than an hour then stay cut.
    floor = NOW_US - HOUR_US
    assert query_cutoff(limits(7 * 86400, floor, RETENTION), NOW_US) == QueryCutoff(
        floor, RETENTION
    )


def test_limits_of_another_generation_than_the_placements_are_ignored() -> None:
    old = limits(retention_s=3600)
    old.generation = 1
    assert current_limits(old, 2) is None
    assert query_cutoff(current_limits(old, 2), NOW_US) is None
    assert current_limits(old, 1) is old
    # A placement's generation 0 is the first.
    assert current_limits(old, 0) is old
    # Limits of generation 0 do not say which: they apply to any.
    unknown = limits(retention_s=3600)
    assert current_limits(unknown, 2) is unknown and current_limits(None, 2) is None


# -- EXPLAIN ---------------------------------------------------------------------------------

MOMENT_US = 1_794_993_243_512_345  # 2026-11-18T09:14:03.512345Z


def test_the_cutoff_reads_as_a_bound_with_its_reason() -> None:
    assert (
        cutoff_text(QueryCutoff(MOMENT_US, RETENTION, retention_s=7200))
        == "timestamp >= '2026-11-18T09:14:03.512345Z' (retention 2h)"
    )
    assert (
        cutoff_text(QueryCutoff(MOMENT_US, RETENTION, retention_s=90 * 60))
        == "timestamp >= '2026-11-18T09:14:03.512345Z' (retention 90m)"
    )
    assert (
        cutoff_text(QueryCutoff(MOMENT_US, STORED_BYTES))
        == "timestamp >= '2026-11-18T09:14:03.512345Z' (stored-bytes limit)"
    )
    assert (
        cutoff_text(QueryCutoff(MOMENT_US, RETENTION))
        == "timestamp >= '2026-11-18T09:14:03.512345Z' (retention before it was lengthened or "
        "removed)"
    )


def test_explain_shows_the_cutoff_after_the_time_range_it_narrowed() -> None:
    planned = parse_statement("EXPLAIN SELECT count(*) FROM ci", now_us=NOW_US)
    assert isinstance(planned, PlannedQuery)
    cutoff = QueryCutoff(MOMENT_US, STORED_BYTES)
    planned.plan.time_range.CopyFrom(with_cutoff(planned.plan.time_range, cutoff.start_us))
    lines = explain_lines(planned, cutoff)
    assert lines[2:4] == [
        "time range: timestamp >= '2026-11-18T09:14:03.512345Z'",
        "cutoff: timestamp >= '2026-11-18T09:14:03.512345Z' (stored-bytes limit)",
    ]
    assert not any(line.startswith("cutoff:") for line in explain_lines(planned))
