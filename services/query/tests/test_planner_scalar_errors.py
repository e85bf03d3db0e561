"""The planner's errors on scalar expressions: each names the place in the SQL and what to write
instead."""

from __future__ import annotations

import pytest

from services.query.tests.planner_helpers import error
from services.query.tests.test_planner_errors import at


@pytest.mark.parametrize(
    ("sql", "message", "token"),
    [
        # unknown and unsupported functions list what there is
        (
            "SELECT nosuch(name) FROM ci",
            "unknown function nosuch(); scalar functions: lower, upper, length, substr,"
            " split_part, regexp_matches, coalesce, date_trunc, time_bucket, CASE WHEN … END"
            " and + - * / %; aggregates: count, count_if, sum, avg",
            "nosuch",
        ),
        ("SELECT round(duration) FROM ci", "function round() is not supported; scalar", "round"),
        ("SELECT sum(abs(duration)) FROM ci", "function abs() is not supported", "abs"),
        (
            "SELECT count(*) FROM ci GROUP BY reverse(name)",
            "function reverse() is not supported",
            "reverse",
        ),
        (
            "SELECT name FROM ci WHERE CAST(retries AS TEXT) = '1'",
            "function cast() is not",
            "retries",
        ),
        (
            "SELECT time_bucket(timestamp, '300000 years') AS t, count(*) FROM ci GROUP BY t",
            "time_bucket width '300000 years' is more than 10,000 years",
            "'300000 years'",
        ),
        # argument counts and types
        ("SELECT lower(5) FROM ci", "type mismatch: lower() takes a string, 5 is a number", "5"),
        ("SELECT length(name, 2) FROM ci", "length() takes one string", "length"),
        (
            "SELECT upper(flaky = TRUE) FROM ci",
            "upper() takes a string, flaky = TRUE is a bool",
            "flaky",
        ),
        (
            "SELECT duration + 'a' FROM ci",
            "type mismatch: arithmetic needs numbers, 'a' is a string",
            "'a'",
        ),
        (
            "SELECT -lower(name) FROM ci",
            "arithmetic needs numbers, lower(name) is a string",
            "lower",
        ),
        ("SELECT substr(name) FROM ci", "substr() needs a start: substr(string, start", "substr"),
        ("SELECT substr(name, 1.5) FROM ci", "the start of substring() is an integer", "1.5"),
        (
            "SELECT split_part(name, '.') FROM ci",
            "split_part() takes three arguments: split_part(string, '.', 2)",
            "split_part",
        ),
        (
            "SELECT split_part(name, 1, 2) FROM ci",
            "split_part() takes a string, 1 is a number",
            "1",
        ),
        (
            "SELECT regexp_matches(name) FROM ci",
            "regexp_matches() takes two arguments: regexp_matches(string, 'pattern')",
            "regexp_matches",
        ),
        (
            "SELECT regexp_matches(name, 'a', 'i') FROM ci",
            "takes no options here; write them in the pattern, e.g. '(?i)x'",
            "'i'",
        ),
        ("SELECT regexp_matches(name, 'a(') FROM ci", "bad regular expression 'a('", "'a('"),
        # RE2's syntax, as DuckDB's: Python's look-around and back-references are refused
        (
            "SELECT count(*) FROM ci WHERE regexp_matches(name, '(?<!x)y')",
            "bad regular expression '(?<!x)y': invalid perl operator: (?<! (RE2's syntax, as in"
            " DuckDB: no look-around, no back-references)",
            "'(?<!x)y'",
        ),
        (
            "SELECT regexp_matches(name, '(a)\\1') FROM ci",
            "bad regular expression '(a)\\1': invalid escape sequence: \\1 (RE2's syntax",
            "'(a)",
        ),
        (
            "SELECT regexp_matches(name, 'a\\Z') FROM ci",
            "bad regular expression 'a\\Z': invalid escape sequence: \\Z",
            "'a",
        ),
        (
            "SELECT regexp_matches(name, suite) FROM ci",
            "the pattern of regexp_matches() is a string in quotes, got suite",
            "suite",
        ),
        (
            "SELECT timestamp + interval '1 hour' FROM ci",
            "interval arithmetic is supported only in a time compared with timestamp",
            "timestamp",
        ),
        # date_trunc and time_bucket
        ("SELECT date_trunc('fortnight', timestamp) FROM ci", "bad date_trunc unit", "date_trunc"),
        (
            "SELECT date_trunc('day', duration) FROM ci",
            "date_trunc() works on timestamp, not duration",
            "duration",
        ),
        (
            "SELECT date_trunc('day', timestamp, 'Mars/Olympus') FROM ci",
            "bad time zone in date_trunc(): ",
            "'Mars/Olympus'",
        ),
        (
            "SELECT date_trunc('day', timestamp, 1) FROM ci",
            "the time zone of date_trunc() is a name in quotes such as 'Europe/Paris', got 1",
            "1",
        ),
        (
            "SELECT time_bucket(timestamp, '1d', 'Europe/Pariss') AS d, count(*) FROM ci"
            " GROUP BY d",
            "bad time zone in time_bucket(): ",
            "'Europe/Pariss'",
        ),
        (
            "SELECT time_bucket(timestamp, '1d', timestamp) FROM ci",
            "the time zone of time_bucket() is a name in quotes",
            "'1d', |timestamp",
        ),
        # WHERE
        (
            "SELECT name FROM ci WHERE lower(name) = upper(name)",
            "comparing two expressions over fields is not supported",
            "lower",
        ),
        (
            "SELECT name FROM ci WHERE lower(name) = 5",
            "type mismatch: lower(name) is a string, 5 is a number",
            "5",
        ),
        (
            "SELECT name FROM ci WHERE length(name)",
            "length(name) is a number, not a condition",
            "length",
        ),
        (
            "SELECT name FROM ci WHERE length(name) LIKE '1%'",
            "type mismatch: LIKE works on strings, and length(name) is a number",
            "length",
        ),
        (
            "SELECT name FROM ci WHERE date_trunc('day', timestamp) ILIKE '2026%'",
            "ILIKE works on strings, and date_trunc('day', timestamp) is a time",
            "date_trunc",
        ),
        ("SELECT name FROM ci WHERE name ILIKE 5", "ILIKE needs a string pattern, got 5", "5"),
        ("SELECT name FROM ci WHERE lower(name) = 1 / 0", "a comparison with NULL", "1 / 0"),
        (
            "SELECT name FROM ci WHERE name ILIKE 'a!%' ESCAPE '!'",
            "LIKE … ESCAPE is not supported",
            "WHERE |name",
        ),
        # grouping
        (
            "SELECT upper(suite), count(*) FROM ci GROUP BY suite",
            "upper(suite) must appear in GROUP BY or be used in an aggregate function",
            "upper",
        ),
        (
            "SELECT coalesce(max(duration), 0) FROM ci",
            "coalesce() of aggregates is not supported",
            "coalesce",
        ),
        (
            "SELECT date_trunc('month', timestamp), count(*) FROM ci"
            " GROUP BY date_trunc('day', timestamp)",
            "date_trunc('month', timestamp) must appear in GROUP BY",
            "date_trunc",
        ),
        (
            "SELECT time_bucket(timestamp, '1 month'), count(*) FROM ci",
            "time_bucket(timestamp, '1 month') must appear in GROUP BY",
            "time_bucket",
        ),
        (
            "SELECT suite FROM ci GROUP BY suite HAVING suite ILIKE 'a%'",
            "ILIKE on group keys and aggregates is not supported (it is in WHERE)",
            "HAVING |suite",
        ),
        (
            "SELECT sum(1) FROM ci",
            "the argument of sum() must be a field or an expression over fields, got 1",
            "1",
        ),
        # SELECT DISTINCT
        (
            "SELECT DISTINCT ON (suite) suite FROM ci",
            "SELECT DISTINCT ON is not supported",
            "(suite) |suite",
        ),
        (
            "SELECT DISTINCT suite FROM ci GROUP BY suite, name",
            "SELECT DISTINCT with GROUP BY is not supported",
            "BY |suite",
        ),
        (
            "SELECT DISTINCT suite, name FROM ci ORDER BY status",
            "field status must appear in the SELECT DISTINCT list",
            "status",
        ),
        (
            "SELECT DISTINCT suite FROM ci ORDER BY count(*) DESC",
            "SELECT DISTINCT with aggregates is not supported",
            "count",
        ),
        (
            "SELECT DISTINCT max(duration) FROM ci",
            "SELECT DISTINCT with aggregates is not supported",
            "max",
        ),
    ],
)
def test_scalar_errors(sql: str, message: str, token: str | None) -> None:
    caught = error(sql)
    assert message in caught.message
    if token is None:
        assert caught.position is None
    else:
        assert caught.position == at(sql, token), (caught.position, sql)
