"""The fields a plan names, in every part of the IR that can name one."""

from __future__ import annotations

from google.protobuf import text_format

from flakehouse.common.v1 import plan_pb2
from flakehouse.query.planfields import plan_fields
from services.query.tests.planner_helpers import plan


def ir(text: str) -> plan_pb2.QueryPlan:
    return text_format.Parse(text, plan_pb2.QueryPlan())


def test_every_part_of_a_plan_that_names_a_field_is_read() -> None:
    found = plan_fields(
        ir(
            """
            filter { junction { op: JUNCTION_OP_OR operands {
                compare { op: COMPARE_OP_EQ field: "status" value { string_value: "failed" } } }
              operands { not { operand { in_list { field: "branch" } } } }
              operands { junction { op: JUNCTION_OP_AND
                operands { like { field: "name" pattern: "%x" } }
                operands { is_null { field: "message" negated: true } } } } } }
            group_by { field: "suite" }
            group_by { time_bucket_us: 3600000000 }
            group_by { field: "$1" }
            aggregates { function: AGGREGATE_FUNCTION_COUNT
              filter { compare { op: COMPARE_OP_GT field: "retries" value { int_value: 0 } } } }
            aggregates { function: AGGREGATE_FUNCTION_SUM field: "duration" }
            aggregates { function: AGGREGATE_FUNCTION_MAX field: "timestamp" }
            computed { call { function: SCALAR_FUNCTION_LOWER args { field: "classname" } } }
            computed { case_when {
              branches {
                condition { compare { op: COMPARE_OP_EQ field: "$0" value { string_value: "a" } } }
                value { field: "hostname" } }
              branches {
                condition { is_null { field: "prop.os" } }
                value { literal { int_value: 1 } } }
              otherwise { call { function: SCALAR_FUNCTION_COALESCE
                args { field: "job" } args { literal { string_value: "" } } } } } }
            """
        )
    )
    assert sorted(found) == [
        "branch",
        "classname",
        "duration",
        "hostname",
        "job",
        "message",
        "name",
        "prop.os",
        "retries",
        "status",
        "suite",
    ]
    assert len(found) == len(set(found))


def test_raw_rows_name_their_fields_and_order() -> None:
    raw = plan("SELECT timestamp, name FROM ci WHERE statuz = 'x' ORDER BY duration DESC").plan
    assert sorted(plan_fields(raw)) == ["duration", "name", "statuz"]


def test_a_plan_without_fields_names_none() -> None:
    assert plan_fields(plan("SELECT count(*) FROM ci WHERE timestamp > '2026-01-01'").plan) == []


def test_a_flat_chain_of_twenty_thousand_terms_is_read_without_recursion() -> None:
    terms = " OR ".join(f"f{i} = 1" for i in range(20_000))
    assert len(plan_fields(plan(f"SELECT count(*) FROM ci WHERE {terms}").plan)) == 20_000
