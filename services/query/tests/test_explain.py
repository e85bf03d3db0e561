"""EXPLAIN lines: the plan and the post-merge steps, readable and in SQL's words."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from flakehouse.common.v1 import plan_pb2
from flakehouse.query.explain import duration_text, explain_lines, filter_text, rfc3339
from flakehouse.query.sql import PlannedQuery, parse_statement
from flakehouse.query.sql.sqltime import parse_timestamp_us

NOW = 1_795_000_000_000_000


def explained(sql: str) -> list[str]:
    planned = parse_statement(sql, now_us=NOW)
    assert isinstance(planned, PlannedQuery) and planned.explain
    return explain_lines(planned)


def test_aggregate_query() -> None:
    assert explained(
        "EXPLAIN SELECT suite, count(*) AS runs, avg(duration),"
        " max(duration) - min(duration) AS spread FROM ci"
        " WHERE status = 'failed' AND timestamp >= '2026-11-01'"
        " AND timestamp < '2026-11-08T12:30:00.5Z'"
        " GROUP BY suite HAVING count(*) > 10 AND p50(duration) <= 2.5"
        " ORDER BY runs DESC LIMIT 20 OFFSET 5"
    ) == [
        "dataset: ci",
        "ir_version: 1",
        "time range: timestamp >= '2026-11-01T00:00:00Z' AND timestamp < '2026-11-08T12:30:00.5Z'",
        "filter: status = 'failed'",
        "group by: suite",
        "aggregates: count(*), avg(duration), max(duration), min(duration),"
        " percentile(duration, 0.5) (not in the answer)",
        "after merge, having: (count(*) > 10) AND (percentile(duration, 0.5) <= 2.5)",
        "after merge, order by: count(*) DESC, then the group keys ascending",
        "after merge, limit: 20 offset 5",
        "columns: suite, count(*) AS runs, avg(duration), max(duration) - min(duration) AS spread",
    ]


def test_time_buckets_and_a_filter_with_or() -> None:
    assert explained(
        "EXPLAIN SELECT time_bucket(timestamp, '90m') AS t, count(DISTINCT name)"
        " FROM \"nightly-2\" WHERE name LIKE 'a%' OR (retries IN (1, 2) AND flaky IS NULL)"
        " OR timestamp > 0 GROUP BY t"
    ) == [
        "dataset: nightly-2",
        "ir_version: 1",
        "time range: all",
        "filter: name LIKE 'a%' OR (retries IN (1, 2) AND flaky IS NULL)"
        " OR timestamp > '1970-01-01T00:00:00Z'",
        "group by: time_bucket(timestamp, '90m')",
        "aggregates: count(DISTINCT name)",
        "after merge, order by: the group keys ascending",
        "columns: time_bucket(timestamp, '90m') AS t, count(DISTINCT name)",
    ]


def test_global_aggregate_and_hidden_count() -> None:
    assert explained("EXPLAIN SELECT count(*) FROM ci")[3:] == [
        "filter: none (every row)",
        "group by: none (one group of all rows)",
        "aggregates: count(*)",
        "columns: count(*)",
    ]
    # GROUP BY without aggregates sends a count(*) that the answer does not show.
    assert "aggregates: count(*) (not in the answer)" in explained(
        "EXPLAIN SELECT k FROM ci GROUP BY k"
    )


def test_each_aggregate_shows_the_rows_it_takes() -> None:
    assert explained(
        "EXPLAIN SELECT name, count(*) FILTER (WHERE status = 'failed') * 1.0 / count(*) AS rate,"
        " count_if(flaky), stddev(duration) FILTER (WHERE timestamp >= '2026-11-01'"
        " AND status IN ('passed', 'failed'))"
        " FROM ci WHERE timestamp >= '2026-10-01' GROUP BY name"
        " HAVING p95(duration) FILTER (WHERE NOT flaky) > 1 ORDER BY rate DESC"
    )[2:] == [
        # The time range is WHERE's; an aggregate's bound on timestamp stays with it.
        "time range: timestamp >= '2026-10-01T00:00:00Z'",
        "filter: none (every row)",
        "group by: name",
        "aggregates: count(*) FILTER (WHERE status = 'failed'), count(*),"
        " count(*) FILTER (WHERE flaky = TRUE),"
        " stddev_samp(duration) FILTER (WHERE timestamp >= '2026-11-01T00:00:00Z'"
        " AND status IN ('passed', 'failed')),"
        " percentile(duration, 0.95) FILTER (WHERE flaky != TRUE) (not in the answer)",
        "after merge, having: percentile(duration, 0.95) FILTER (WHERE flaky != TRUE) > 1",
        "after merge, order by: (count(*) FILTER (WHERE status = 'failed') * 1.0) / count(*)"
        " DESC, then the group keys ascending",
        "columns: name, (count(*) FILTER (WHERE status = 'failed') * 1.0) / count(*) AS rate,"
        ' count(*) FILTER (WHERE flaky = TRUE) AS "count_if(flaky)",'
        " stddev_samp(duration) FILTER (WHERE timestamp >= '2026-11-01T00:00:00Z'"
        " AND status IN ('passed', 'failed')) AS \"stddev(duration) FILTER (WHERE timestamp >="
        " '2026-11-01' AND status IN ('passed', 'failed'))\"",
    ]


def test_raw_rows_query() -> None:
    assert explained(
        "EXPLAIN SELECT name, d FROM ci"
        " WHERE NOT (status = 'passed' OR \"prop.os\" NOT IN ('linux', 'it''s'))"
        " ORDER BY d DESC, timestamp LIMIT 50"
    ) == [
        "dataset: ci",
        "ir_version: 1",
        "time range: all",
        "filter: status != 'passed' AND \"prop.os\" IN ('linux', 'it''s')",
        "select fields: name, d, timestamp (for ORDER BY only)",
        "order by: d DESC, timestamp",
        "limit per partition: 50",
        "after merge, order by: d DESC, timestamp",
        "after merge, limit: 50",
        "columns: name, d",
    ]


def test_filter_text_of_every_node() -> None:
    expr = text_format.Parse(
        """
        junction { op: JUNCTION_OP_OR operands {
          not { operand { junction { op: JUNCTION_OP_AND operands {
            compare { op: COMPARE_OP_LE field: "a:b" value { float_value: 1.5 } } } operands {
            is_null { field: "x" negated: true } } } } } } operands {
          like { field: "n" pattern: "%x_" negated: true } } operands {
          in_list { field: "b" values { bool_value: true } values { int_value: -3 } } }
        }
        """,
        plan_pb2.Expr(),
    )
    assert filter_text(expr) == (
        "NOT (\"a:b\" <= 1.5 AND x IS NOT NULL) OR n NOT LIKE '%x_' OR b IN (TRUE, -3)"
    )


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_795_000_000_123_400, "2026-11-18T11:06:40.1234Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (2**63 - 1, f"{2**63 - 1} us"),  # beyond year 9999
    ],
)
def test_rfc3339(micros: int, text: str) -> None:
    assert rfc3339(micros) == text
    if not text.endswith(" us"):
        assert parse_timestamp_us(text) == micros  # what the SQL reads back


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (86_400_000_000, "1d"),
        (7 * 86_400_000_000, "7d"),
        (3_600_000_000, "1h"),
        (5_400_000_000, "90m"),
        (1_500_000, "1500ms"),
        (7, "7us"),
    ],
)
def test_duration_text(micros: int, text: str) -> None:
    assert duration_text(micros) == text


def test_the_example_in_sql_md() -> None:
    text = (Path(__file__).parents[1] / "SQL.md").read_text()
    section = text[text.index("## EXPLAIN") :]
    query = section.split("```sql\n", 1)[1].split("```", 1)[0]
    lines = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    # The partition lines come from the placement, added by the servicer (test_api_explain.py).
    plan_lines = [line for line in lines if not line.startswith("partition")]
    assert explained(query) == plan_lines
    assert len(plan_lines) < len(lines)
