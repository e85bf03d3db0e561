"""The planner on raw-rows queries: fetched fields, ORDER BY, LIMIT and OFFSET."""

from __future__ import annotations

from flakehouse.query import finalexpr
from flakehouse.query.sql.planner import DEFAULT_RAW_LIMIT, MAX_RAW_LIMIT
from services.query.tests.planner_helpers import cmp, error, ir, plan


def test_raw_rows_default_limit() -> None:
    planned = plan("SELECT timestamp, name, \"prop.os\" AS os FROM ci WHERE status = 'failed'")
    assert planned.plan == ir(
        f"""
        ir_version: 1 dataset: "ci"
        filter {{ {cmp("EQ", "status", 'string_value: "failed"')} }}
        select_fields: "timestamp" select_fields: "name" select_fields: "prop.os"
        limit: {DEFAULT_RAW_LIMIT + 1}
        """
    )  # one row more than answered: the answer can tell it was cut
    assert not planned.is_aggregate
    assert planned.columns == ["timestamp", "name", "os"]
    assert planned.outputs == [finalexpr.FieldRef(0), finalexpr.FieldRef(1), finalexpr.FieldRef(2)]
    assert (planned.limit, planned.offset) == (DEFAULT_RAW_LIMIT, 0)
    assert planned.default_limit
    explicit = plan(f"SELECT name FROM ci LIMIT {DEFAULT_RAW_LIMIT}")
    assert explicit.plan.limit == DEFAULT_RAW_LIMIT and not explicit.default_limit


def test_raw_rows_order_by_hidden_fields_alias_and_position() -> None:
    planned = plan(
        "SELECT name, duration AS d FROM ci ORDER BY timestamp DESC, d, 1 DESC, retries"
        " LIMIT 10 OFFSET 5"
    )
    assert planned.plan == ir(
        """
        ir_version: 1 dataset: "ci"
        select_fields: "name" select_fields: "duration"
        select_fields: "timestamp" select_fields: "retries"
        order_by { field: "timestamp" descending: true }
        order_by { field: "duration" }
        order_by { field: "name" descending: true }
        order_by { field: "retries" }
        limit: 15
        """
    )
    # Hidden fields are fetched for sorting but not output.
    assert planned.outputs == [finalexpr.FieldRef(0), finalexpr.FieldRef(1)]
    assert planned.columns == ["name", "d"]
    assert planned.order == [
        finalexpr.SortKey(finalexpr.FieldRef(2), True),
        finalexpr.SortKey(finalexpr.FieldRef(1), False),
        finalexpr.SortKey(finalexpr.FieldRef(0), True),
        finalexpr.SortKey(finalexpr.FieldRef(3), False),
    ]
    assert (planned.limit, planned.offset) == (10, 5)


def test_raw_rows_limit_bounds() -> None:
    assert plan(f"SELECT name FROM ci LIMIT {MAX_RAW_LIMIT}").plan.limit == MAX_RAW_LIMIT
    # LIMIT 0 must not read as "no limit" on the storage side.
    zero = plan("SELECT name FROM ci LIMIT 0")
    assert (zero.limit, zero.plan.limit) == (0, 1)
    sql = f"SELECT name FROM ci LIMIT {MAX_RAW_LIMIT} OFFSET 1"
    caught = error(sql)
    assert f"at most {MAX_RAW_LIMIT}" in caught.message
    assert caught.position == sql.index(str(MAX_RAW_LIMIT))


def test_same_field_twice_is_fetched_once() -> None:
    planned = plan("SELECT name, name AS again FROM ci ORDER BY name")
    assert list(planned.plan.select_fields) == ["name"]
    assert planned.outputs == [finalexpr.FieldRef(0), finalexpr.FieldRef(0)]
