"""The planner's errors: each unsupported or wrong query gives a clear QueryError at the
position of the offending token."""

from __future__ import annotations

import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.query.sql import QueryError, parse_statement
from services.query.tests.planner_helpers import error, plan


def at(sql: str, token: str) -> int:
    """Offset of `token` in `sql`; "context|token" is the token after that context."""
    context, _, token = token.rpartition("|")
    return sql.index(token, sql.index(context) + len(context))


@pytest.mark.parametrize(
    ("sql", "message", "token"),
    [
        # syntax
        ("SELECT name FROM ci WHERE", "syntax error near 'WHERE': incomplete WHERE", "WHERE"),
        ("SELEC name FROM ci", "syntax error near 'FROM'", "FROM"),
        ("SELECT name FROM ci WHERE (a = 1", "Expecting )", "1"),
        # functions and arity
        ("SELECT foo(x) FROM ci GROUP BY x", "unknown function foo()", "foo"),
        ("SELECT foo(x) FROM ci", "unknown function foo()", "foo"),
        (
            "SELECT length(name), count(*) FROM ci",
            "length(name) must appear in GROUP BY or be used in an aggregate function",
            "length",
        ),
        ("SELECT min(a, b) FROM ci", "min() takes one field, got 2", "min"),
        ("SELECT count(a, b) FROM ci", "count() takes one argument", "count"),
        ("SELECT count() FROM ci", "count() needs an argument", "count"),
        ("SELECT sum(*) FROM ci", "sum(*) is not valid; name a field", "*"),
        ("SELECT avg(DISTINCT x) FROM ci", "DISTINCT is only supported in count()", "x"),
        (
            "SELECT sum(count(*)) FROM ci",
            "aggregate functions cannot be nested: count() inside sum()",
            "count",
        ),
        (
            "SELECT kurtosis(x) FROM ci",
            "aggregate function kurtosis() is not supported",
            "kurtosis",
        ),
        ("SELECT percentile(x) FROM ci", "percentile() takes a field and a quantile", "percentile"),
        ("SELECT percentile(x, 95) FROM ci", "the quantile must be a number in (0, 1]", "95"),
        ("SELECT p95(x, 1) FROM ci", "p95() takes one field, got 2", "p95"),
        ("SELECT percentile(x, 0) FROM ci", "the quantile must be a number in (0, 1]", "0"),
        ("SELECT percentile(x, 1.5) FROM ci", "the quantile must be a number in (0, 1]", "1.5"),
        ("SELECT percentile(x, -0.5) FROM ci", "the quantile must be a number in (0, 1]", "-|0.5"),
        ("SELECT percentile(x, '0.5') FROM ci", "the quantile must be a number in (0, 1]", "'"),
        ("SELECT percentile(x, y) FROM ci", "the quantile must be a number in (0, 1]", "y"),
        ("SELECT percentile(0.5, x) FROM ci", "argument of percentile() must be a field", "0.5"),
        ("SELECT p50(DISTINCT x) FROM ci", "DISTINCT is only supported in count()", "x"),
        ("SELECT count(DISTINCT a, b) FROM ci", "count(DISTINCT …) takes one field", "count"),
        ("SELECT count(DISTINCT *) FROM ci", "count(DISTINCT *) is not valid; name a field", "*"),
        # aggregates in the wrong place, grouping
        (
            "SELECT name FROM ci WHERE count(*) > 1",
            "count() is not allowed in WHERE; use HAVING",
            "count",
        ),
        (
            "SELECT count(*) FROM ci GROUP BY count(*)",
            "count() is not allowed in GROUP BY",
            "BY |count",
        ),
        (
            "SELECT suite, count(*) AS n FROM ci GROUP BY suite, n",
            "count() is not allowed in GROUP BY",
            "BY suite, |n",
        ),
        ("SELECT suite, count(*) FROM ci GROUP BY 2", "count() is not allowed in GROUP BY", "2"),
        (
            "SELECT suite, count(*) FROM ci",
            "field suite must appear in GROUP BY or be used in an aggregate function",
            "suite",
        ),
        (
            "SELECT suite, status, count(*) FROM ci GROUP BY suite",
            "field status must appear in GROUP BY",
            "status",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite ORDER BY status",
            "field status must appear in GROUP BY",
            "status",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING status = 'x'",
            "field status must appear in GROUP BY",
            "status",
        ),
        (
            "SELECT time_bucket(timestamp, '1h'), count(*) FROM ci"
            " GROUP BY time_bucket(timestamp, '1d')",
            "time_bucket(timestamp, '1h') must appear in GROUP BY",
            "time_bucket",
        ),
        (
            "SELECT suite FROM ci GROUP BY 3",
            "GROUP BY position 3 is not in the select list (1 to 1)",
            "3",
        ),
        (
            "SELECT suite FROM ci GROUP BY ROLLUP (suite)",
            "GROUP BY ROLLUP is not supported",
            "ROLLUP (|suite",
        ),
        # time_bucket
        (
            "SELECT time_bucket(timestamp, '1 fortnight') AS t FROM ci GROUP BY t",
            "bad time_bucket width: unknown time unit 'fortnight'",
            "'1 fortnight'",
        ),
        (
            "SELECT time_bucket(timestamp, '0s') AS t FROM ci GROUP BY t",
            "time_bucket width must be positive",
            "'0s'",
        ),
        (
            "SELECT time_bucket(timestamp, '1 month 2 days') AS t FROM ci GROUP BY t",
            "a time_bucket width is months (or years) or a fixed time, not both",
            "'1 month 2 days'",
        ),
        (
            "SELECT time_bucket(duration, '1h') AS t FROM ci GROUP BY t",
            "time_bucket() buckets timestamp, not duration",
            "duration",
        ),
        (
            "SELECT time_bucket(timestamp) AS t FROM ci GROUP BY t",
            "time_bucket() takes two or three arguments, got 1",
            "time_bucket",
        ),
        (
            "SELECT time_bucket(timestamp, 3600) AS t FROM ci GROUP BY t",
            "bad time_bucket width 3600",
            "3600",
        ),
        # intervals and times
        (
            "SELECT name FROM ci WHERE timestamp > now() - interval '3 fortnights'",
            "bad interval: unknown time unit 'FORTNIGHTS'",
            "now",
        ),
        (
            "SELECT name FROM ci WHERE timestamp > 'last week'",
            "not a date or time: 'last week'",
            "'last week'",
        ),
        (
            "SELECT name FROM ci WHERE timestamp > TRUE",
            "type mismatch: timestamp is a time, not a bool",
            "WHERE |timestamp",
        ),
        (
            "SELECT name FROM ci WHERE timestamp LIKE '2026%'",
            "LIKE works on strings, and timestamp is a time",
            "timestamp",
        ),
        ("SELECT name FROM ci WHERE started > now()", "expected a literal value", "now"),
        # types and values
        (
            "SELECT name FROM ci WHERE duration LIKE 5",
            "type mismatch: LIKE needs a string pattern, got 5",
            "5",
        ),
        (
            "SELECT name FROM ci WHERE name = NULL",
            "a comparison with NULL is never true; use IS NULL",
            "WHERE |name",
        ),
        (
            "SELECT name FROM ci WHERE name IN ('a', NULL)",
            "a comparison with NULL is never true",
            "WHERE |name",
        ),
        ("SELECT name FROM ci WHERE a = b", "comparing two fields is not supported", "WHERE |a"),
        ("SELECT name FROM ci WHERE 1 = 1", "a condition needs a field", "1"),
        ("SELECT name FROM ci WHERE TRUE", "a condition needs a field", None),
        (
            "SELECT name FROM ci WHERE flaky IS TRUE",
            "only IS NULL and IS NOT NULL are supported",
            "flaky",
        ),
        (
            "SELECT name FROM ci WHERE name LIKE 'a!%' ESCAPE '!'",
            "ESCAPE is not supported",
            "WHERE |name",
        ),
        (
            "SELECT name FROM ci WHERE retries = 99999999999999999999",
            "does not fit in 64 bits",
            "9999",
        ),
        (
            "SELECT name FROM ci WHERE abs(duration) > 3",
            "function abs() is not supported; scalar functions: lower, upper, length",
            "abs",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING count(*) > 'many'",
            "type mismatch in count(*) > 'many'",
            "count",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING p95(d) > 'slow'",
            "type mismatch in p95(d) > 'slow': cannot compare a number with a string",
            "p95",
        ),
        (
            "SELECT count(DISTINCT x) LIKE 'a%' FROM ci",
            "type mismatch: LIKE works on strings, count(DISTINCT x) is a number",
            "count",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING count(*) LIKE 'x%'",
            "type mismatch: LIKE works on strings, count(*) is a number",
            "count",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING count(*) = NULL",
            "a comparison with NULL is never true",
            "count",
        ),
        (
            "SELECT suite, count(*) + 'a' FROM ci GROUP BY suite",
            "type mismatch: arithmetic needs numbers, 'a' is a string",
            "'a'",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING count(*)",
            "HAVING needs a condition",
            "count",
        ),
        # query shape
        ("SELECT * FROM ci", "SELECT * is not supported; list the fields", "*"),
        (
            "SELECT DISTINCT suite, count(*) FROM ci",
            "SELECT DISTINCT with aggregates is not supported",
            "count",
        ),
        ("SELECT name FROM ci JOIN other ON a = b", "joins are not supported", "other"),
        ("SELECT name FROM ci, other", "joins are not supported", "other"),
        ("SELECT name FROM (SELECT name FROM ci)", "subqueries are not supported", "(SELECT |name"),
        (
            "SELECT name FROM ci WHERE name IN (SELECT name FROM ci)",
            "subqueries are not supported",
            "(SELECT |name",
        ),
        ("WITH q AS (SELECT 1) SELECT name FROM q", "subqueries are not supported", "(SELECT |1"),
        (
            "SELECT name FROM ci UNION SELECT name FROM ci",
            "UNION, INTERSECT and EXCEPT are not supported",
            "name",
        ),
        ("SELECT count(*) OVER () FROM ci", "window functions (OVER) are not supported", "count"),
        ("SELECT name FROM ci; SELECT name FROM ci", "one statement per query", "; SELECT |name"),
        ("SELECT name", "a query needs FROM <dataset>", None),
        ("SELECT name FROM CI", "invalid dataset name 'CI'", "CI"),
        ("SELECT name FROM db.ci", "only a plain dataset name is supported", "db"),
        ('SELECT "1abc" FROM ci', "invalid field name '1abc'", '"1abc"'),
        ('SELECT "a b" FROM ci', "invalid field name 'a b'", '"a b"'),
        (
            "SELECT name FROM ci ORDER BY 'x'",
            "order by a field, an expression over fields, an alias or a position",
            "'x'",
        ),
        (
            "SELECT name FROM ci ORDER BY name NULLS FIRST",
            "NULLS FIRST is not supported",
            "name NULLS",
        ),
        ("SELECT name FROM ci ORDER BY 2", "ORDER BY position 2 is not in the select list", "2"),
        (
            "SELECT suite FROM ci GROUP BY suite ORDER BY 'x'",
            "order by a column, alias or position",
            "'x'",
        ),
        ("SELECT name FROM ci LIMIT 'x'", "LIMIT takes a non-negative integer, got 'x'", "'x'"),
        ("SELECT name FROM ci LIMIT -1", "LIMIT takes a non-negative integer, got -1", "1"),
        ("SELECT name FROM ci FETCH FIRST 5 ROWS ONLY", "FETCH is not supported; use LIMIT n", "5"),
        ("INSERT INTO ci VALUES (1)", "only SELECT queries are supported, not INSERT", "ci"),
    ],
)
def test_errors(sql: str, message: str, token: str | None) -> None:
    caught = error(sql)
    assert message in caught.message
    if token is None:
        assert caught.position is None
    else:
        assert caught.position == at(sql, token), (caught.position, sql)


@pytest.mark.parametrize("sql", ["", "   ", ";"])
def test_empty_query(sql: str) -> None:
    assert "empty query" in error(sql).message


@pytest.mark.parametrize(
    ("sql", "message", "token"),
    [
        (
            "SELECT name FROM ci WHERE a = 'it''s",
            "cannot read the SQL (an unclosed quote?): this ' is never closed",
            "= |'",
        ),
        (
            "SELECT \"a b FROM ci WHERE c = 'd'",
            'cannot read the SQL (an unclosed quote?): this " is never closed',
            '"',
        ),
        (
            "SELECT name FROM ci /* ok */ WHERE a = 1 /* no end",
            "cannot read the SQL: this comment is never closed",
            "1 |/*",
        ),
    ],
)
def test_what_is_never_closed_is_pointed_at(sql: str, message: str, token: str) -> None:
    caught = error(sql)
    assert (caught.message, caught.position) == (message, at(sql, token))


def test_syntax_error_position_on_a_later_line() -> None:
    sql = "SELECT name\nFROM ci\nWHERE a = 1 AND AND b = 2"
    caught = error(sql)
    assert caught.position == sql.index("AND b")
    assert caught.line_column(sql) == (3, 17)
    assert caught.describe(sql).endswith("(line 3, column 17)")


def test_semantic_error_line_and_column() -> None:
    sql = "SELECT suite,\n       count(*),\n       status\nFROM ci GROUP BY suite"
    caught = error(sql)
    assert caught.line_column(sql) == (3, 8)
    assert str(caught) == f"{caught.message} (at character {sql.index('status')})"


# -- hostile or machine-written SQL: an answer or a located error, never a RecursionError ------


def test_deeply_nested_parentheses_are_refused_where_they_get_too_deep() -> None:
    sql = "SELECT count(*) FROM ci WHERE " + "(" * 3000 + "status = 'x'" + ")" * 3000
    found = error(sql)
    assert "parentheses and CASEs nested more than 32 deep" in found.message
    assert found.position == sql.index("WHERE (") + len("WHERE ") + 32  # the 33rd
    ok = "SELECT count(*) FROM ci WHERE " + "(" * 32 + "status = 'x'" + ")" * 32
    assert plan(ok).plan.filter.compare.field == "status"
    # Parentheses inside strings and quoted names do not count.
    quoted = "SELECT count(*) FROM ci WHERE name = '" + "(" * 100 + "'"
    assert plan(quoted).plan.filter.compare.value.string_value == "(" * 100


def test_a_long_or_chain_plans_as_one_flat_junction() -> None:
    terms = [f"name = 't{i}'" for i in range(20_000)]
    planned = plan(
        "SELECT count(*) FROM ci WHERE status = 'failed' AND (" + " OR ".join(terms) + ")"
    )
    status, names = planned.plan.filter.junction.operands
    assert status.compare.field == "status"
    assert names.junction.op == plan_pb2.JUNCTION_OP_OR
    assert [o.compare.value.string_value for o in names.junction.operands] == [
        f"t{i}" for i in range(20_000)
    ]
    # The plan travels to storage: protobuf parses it back (its nesting stays shallow).
    assert plan_pb2.QueryPlan.FromString(planned.plan.SerializeToString()) == planned.plan
    negated = plan("SELECT count(*) FROM ci WHERE NOT (" + " OR ".join(terms[:3]) + ")")
    assert negated.plan.filter.junction.op == plan_pb2.JUNCTION_OP_AND  # De Morgan, flat


def test_any_other_chain_too_deep_to_plan_is_a_located_error_not_a_crash() -> None:
    # More in test_planner_depth.py.
    sql = "SELECT count(*) + " + " + ".join("1" for _ in range(5000)) + " FROM ci"
    with pytest.raises(QueryError, match="expression nested deeper than 30 levels") as caught:
        parse_statement(sql, now_us=0)
    assert caught.value.position == sql.index("count")
