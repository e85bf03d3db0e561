"""parse_statement: queries, EXPLAIN <query> and DESCRIBE <dataset>, with positioned errors."""

from __future__ import annotations

import pytest

from flakehouse.query.sql import Describe, PlannedQuery, QueryError, parse_statement, plan_query

NOW = 1_795_000_000_000_000
QUERY = (
    "SELECT suite, count(*) AS runs FROM ci WHERE status = 'failed'"
    " GROUP BY suite HAVING count(*) > 1 ORDER BY runs DESC LIMIT 5"
)


def statement(sql: str) -> PlannedQuery | Describe:
    return parse_statement(sql, now_us=NOW)


def error(sql: str) -> QueryError:
    with pytest.raises(QueryError) as caught:
        statement(sql)
    return caught.value


def test_a_query_is_planned_as_plan_query_does() -> None:
    planned = statement(QUERY)
    assert planned == plan_query(QUERY, now_us=NOW)
    assert isinstance(planned, PlannedQuery) and not planned.explain


@pytest.mark.parametrize(
    "sql",
    [
        f"EXPLAIN {QUERY}",
        f"explain\n  {QUERY};",
        f"/* why so slow? */ Explain {QUERY}",
    ],
)
def test_explain_plans_the_query_and_says_so(sql: str) -> None:
    planned = statement(sql)
    assert isinstance(planned, PlannedQuery) and planned.explain
    expected = plan_query(QUERY, now_us=NOW)
    assert planned.plan == expected.plan
    assert (planned.columns, planned.outputs, planned.having, planned.order, planned.limit) == (
        expected.columns,
        expected.outputs,
        expected.having,
        expected.order,
        expected.limit,
    )


@pytest.mark.parametrize(
    ("sql", "dataset"),
    [
        ("DESCRIBE ci", "ci"),
        ("describe table ci", "ci"),
        ("DESC ci;", "ci"),
        ('DESCRIBE "nightly-2"', "nightly-2"),
        ("SHOW COLUMNS FROM ci", "ci"),
        ("show columns in ci_2", "ci_2"),
    ],
)
def test_describe(sql: str, dataset: str) -> None:
    assert statement(sql) == Describe(dataset)


@pytest.mark.parametrize(
    ("sql", "message", "at"),
    [
        ("EXPLAIN", "EXPLAIN needs a query", "EXPLAIN"),
        ("EXPLAIN ANALYZE SELECT a FROM ci", "EXPLAIN ANALYZE is not supported", "ANALYZE"),
        ("EXPLAIN DESCRIBE ci", "EXPLAIN takes a SELECT query", "DESCRIBE"),
        # Errors in the query point into the original SQL, EXPLAIN included.
        ("EXPLAIN SELECT * FROM ci", "SELECT * is not supported", "*"),
        ("EXPLAIN SELECT a FROM ci WHERE", "incomplete WHERE", "WHERE"),
        ("EXPLAIN  SELECT a FROM ci GROUP BY 3", "GROUP BY position 3", "3"),
        ("DESCRIBE", "DESCRIBE takes a dataset name", "DESCRIBE"),
        ("DESCRIBE 123", "DESCRIBE takes a dataset name", "123"),
        ("DESCRIBE ci.x", "only a plain dataset name", "ci"),
        ("DESCRIBE Nightly", "invalid dataset name 'Nightly'", "Nightly"),
        ("DESCRIBE SELECT a FROM ci", "not a query; EXPLAIN SELECT", "a FROM"),
        ("DESCRIBE VIEW ci", "DESCRIBE VIEW is not supported", "ci"),
        ("DESCRIBE EXTENDED ci", "takes only a dataset name", "ci"),
        ("DESCRIBE ci; DESCRIBE x", "one statement per query", "x"),
        ("SHOW TABLES", "SHOW supports only SHOW COLUMNS FROM", "SHOW"),
        ("SHOW COLUMNS FROM ci.y", "SHOW COLUMNS FROM ci.y: only a plain dataset", "ci"),
    ],
)
def test_statement_errors_point_at_the_offending_token(sql: str, message: str, at: str) -> None:
    caught = error(sql)
    assert message in caught.message
    assert caught.position == sql.rindex(at)


def test_plan_query_takes_only_queries() -> None:
    with pytest.raises(
        QueryError, match="only SELECT queries are supported, not EXPLAIN"
    ) as caught:
        plan_query(f"  EXPLAIN {QUERY}", now_us=NOW)
    assert caught.value.position == 2
