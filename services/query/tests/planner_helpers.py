"""Planning SQL at a fixed time and writing the expected IR as protobuf text, for the planner
tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import text_format

from flakehouse.common.v1 import plan_pb2
from flakehouse.query.sql import QueryError
from flakehouse.query.sql.planner import PlannedQuery, plan_query

SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
NOW = int(datetime(2026, 11, 15, 12, tzinfo=UTC).timestamp()) * SECOND


def micros(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * SECOND


def plan(sql: str) -> PlannedQuery:
    return plan_query(sql, now_us=NOW)


def ir(text: str) -> plan_pb2.QueryPlan:
    return text_format.Parse(text, plan_pb2.QueryPlan())


def where(condition: str) -> plan_pb2.QueryPlan:
    """The plan of a raw-rows query with this WHERE, to look at its filter and time range."""
    return plan(f"SELECT name FROM ci WHERE {condition}").plan


def expr(text: str) -> plan_pb2.Expr:
    return text_format.Parse(text, plan_pb2.Expr())


def cmp(op: str, field: str, value: str) -> str:
    return f'compare {{ op: COMPARE_OP_{op} field: "{field}" value {{ {value} }} }}'


def error(sql: str) -> QueryError:
    with pytest.raises(QueryError) as caught:
        plan(sql)
    return caught.value
