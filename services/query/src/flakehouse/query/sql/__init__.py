"""The SQL front end: SQL text to a `PlannedQuery` (the IR storage nodes run, and what the query
service applies after the merge) or a `Describe`, or a `QueryError` that points into the SQL."""

from flakehouse.query.sql.errors import QueryError
from flakehouse.query.sql.planner import Describe, PlannedQuery, parse_statement, plan_query

__all__ = ["Describe", "PlannedQuery", "QueryError", "parse_statement", "plan_query"]
